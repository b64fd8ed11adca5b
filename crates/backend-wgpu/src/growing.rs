//! Sessions whose inputs change shape from one inference to the next (a decoder's prefill, then
//! its decode steps over a growing cache). A wgpu program is lowered for the shapes bound at
//! load, so this session prepares one program per set of input shapes it meets and keeps it: a
//! request of G decode steps meets G + 1 of them, the same ones for every request of that prompt
//! length, so a warm-up request prepares what the timed requests run.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use chipbench_core::{
    Error as CoreError, FeedbackPath, ModelSource, Result, Session, Tensor, TensorInfo,
};

use crate::adapter::Gpu;
use crate::session::WgpuSession;
use crate::{WgpuError, import};

/// Programs kept at the most: each holds its own copy of the weights on the device, so a session
/// that meets more shapes than this (a request of more decode steps) is refused rather than
/// allowed to fill the device's memory.
pub const MAX_PROGRAMS: usize = 256;

/// A wgpu session that prepares a program per set of input shapes.
pub struct GrowingSession {
    gpu: Arc<Gpu>,
    path: PathBuf,
    profile: bool,
    timestamps: bool,
    /// The inputs and outputs as bound at load (names and types; the shapes of the first load).
    inputs: Vec<TensorInfo>,
    outputs: Vec<TensorInfo>,
    settings: BTreeMap<String, String>,
    programs: HashMap<Vec<Vec<usize>>, WgpuSession>,
}

impl GrowingSession {
    /// Prepares the program of the shapes `model` binds.
    pub(crate) fn new(
        gpu: Arc<Gpu>,
        model: &ModelSource,
        profile: bool,
        timestamps: bool,
    ) -> std::result::Result<Self, WgpuError> {
        let mut session = GrowingSession {
            gpu,
            path: model.path.clone(),
            profile,
            timestamps,
            inputs: model.inputs.clone(),
            outputs: Vec::new(),
            settings: BTreeMap::new(),
            programs: HashMap::new(),
        };
        let shapes: Vec<Vec<usize>> = model.inputs.iter().map(|i| i.shape.clone()).collect();
        let first = session.program(shapes)?;
        let (outputs, mut settings) = (first.outputs().to_vec(), first.settings());
        settings.insert(
            "programs".into(),
            format!("one per set of input shapes, at most {MAX_PROGRAMS}"),
        );
        session.outputs = outputs;
        session.settings = settings;
        Ok(session)
    }

    /// The program of `shapes`, prepared on first use.
    fn program(
        &mut self,
        shapes: Vec<Vec<usize>>,
    ) -> std::result::Result<&mut WgpuSession, WgpuError> {
        if !self.programs.contains_key(&shapes) {
            if self.programs.len() == MAX_PROGRAMS {
                return Err(WgpuError::Run(format!(
                    "{}: wgpu prepares a program (with its own copy of the weights) per set of \
                     input shapes, and this session met more than {MAX_PROGRAMS}",
                    self.path.display()
                )));
            }
            let inputs = self
                .inputs
                .iter()
                .zip(&shapes)
                .map(|(info, shape)| TensorInfo {
                    shape: shape.clone(),
                    ..info.clone()
                })
                .collect();
            let source = ModelSource {
                path: self.path.clone(),
                inputs,
            };
            let imported = import::import(&source, self.gpu.f16)?;
            let session = WgpuSession::new(
                self.gpu.clone(),
                imported.program,
                imported.inputs,
                imported.outputs,
                self.profile,
                self.timestamps,
            )?;
            self.programs.insert(shapes.clone(), session);
        }
        Ok(self.programs.get_mut(&shapes).expect("inserted above"))
    }
}

impl Session for GrowingSession {
    fn inputs(&self) -> &[TensorInfo] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorInfo] {
        &self.outputs
    }

    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        if inputs.len() != self.inputs.len() {
            return Err(CoreError::Run(format!(
                "{} inputs given, the model has {}",
                inputs.len(),
                self.inputs.len()
            )));
        }
        let shapes = inputs.iter().map(|t| t.shape().to_vec()).collect();
        self.program(shapes)?.run(inputs)
    }

    /// The default host round trip, and what it costs on wgpu besides: the programs prepared.
    fn feedback_path(&self, pairs: &[(usize, usize)]) -> FeedbackPath {
        let mut path = chipbench_core::feedback::host_round_trip(pairs);
        path.how.push_str(&format!(
            "; wgpu lowers a program per set of input shapes (each with its own copy of the \
             weights on the device): {} prepared so far, each on its first use",
            self.programs.len()
        ));
        path
    }

    /// One host thread submits; the device does the work.
    fn threads(&self) -> usize {
        1
    }

    fn settings(&self) -> BTreeMap<String, String> {
        self.settings.clone()
    }
}
