//! The execution providers chipbench can register, and how each becomes a device.

use chipbench_core::DeviceKind;
use ort::ep::{self, ExecutionProviderDispatch};

/// An execution provider this build of chipbench can register (the `ort` features it is built
/// with). A library may list more; those are reported but not offered as devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    Cpu,
    Cuda,
    TensorRt,
    OpenVino,
    Xnnpack,
}

impl Provider {
    pub const ALL: [Provider; 5] = [
        Provider::Cpu,
        Provider::Cuda,
        Provider::TensorRt,
        Provider::OpenVino,
        Provider::Xnnpack,
    ];

    /// The device id on the command line: `ort:cuda`.
    pub fn id(self) -> &'static str {
        match self {
            Provider::Cpu => "cpu",
            Provider::Cuda => "cuda",
            Provider::TensorRt => "tensorrt",
            Provider::OpenVino => "openvino",
            Provider::Xnnpack => "xnnpack",
        }
    }

    /// The name ONNX Runtime uses (`GetAvailableProviders`, profiles, placement).
    pub fn ort_name(self) -> &'static str {
        match self {
            Provider::Cpu => "CPUExecutionProvider",
            Provider::Cuda => "CUDAExecutionProvider",
            Provider::TensorRt => "TensorrtExecutionProvider",
            Provider::OpenVino => "OpenVINOExecutionProvider",
            Provider::Xnnpack => "XnnpackExecutionProvider",
        }
    }

    pub fn from_id(id: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.id() == id)
    }

    pub fn from_ort_name(name: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.ort_name() == name)
    }

    /// What the provider runs on. CUDA on an ARM host is taken to be a Jetson-class integrated
    /// GPU; OpenVINO's default device is the CPU.
    pub fn kind(self) -> DeviceKind {
        match self {
            Provider::Cpu | Provider::Xnnpack | Provider::OpenVino => DeviceKind::Cpu,
            Provider::Cuda if cfg!(target_arch = "aarch64") => DeviceKind::IntegratedGpu,
            Provider::Cuda => DeviceKind::DiscreteGpu,
            Provider::TensorRt => DeviceKind::Accelerator,
        }
    }

    /// The providers to register for this device, in order of preference, each set to fail the
    /// session rather than fall back silently. TensorRT is followed by CUDA, which takes the nodes
    /// TensorRT cannot, as ONNX Runtime recommends. The CPU provider needs no registration.
    pub fn registrations(self) -> Vec<ExecutionProviderDispatch> {
        let strict = |d: ExecutionProviderDispatch| d.error_on_failure();
        match self {
            Provider::Cpu => Vec::new(),
            Provider::Cuda => vec![strict(ep::CUDA::default().build())],
            Provider::TensorRt => {
                vec![
                    strict(ep::TensorRT::default().build()),
                    strict(ep::CUDA::default().build()),
                ]
            }
            Provider::OpenVino => vec![strict(ep::OpenVINO::default().build())],
            Provider::Xnnpack => vec![strict(ep::XNNPACK::default().build())],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_onnx_runtime_names_round_trip() {
        for p in Provider::ALL {
            assert_eq!(Provider::from_id(p.id()), Some(p));
            assert_eq!(Provider::from_ort_name(p.ort_name()), Some(p));
        }
        assert_eq!(Provider::from_ort_name("AzureExecutionProvider"), None);
    }
}
