//! Outputs of one inference fed back as inputs of the next (a decoder's cache), run by
//! [`Session::run_feeding_back`](crate::Session::run_feeding_back) without handing them to the
//! caller: between inferences a [`Feedback`] holds them in the form the session keeps them.

use std::any::Any;

use crate::{Error, Result, Tensor, TensorInfo};

/// The `(output, input)` pairs of a feedback loop and what its session holds of the last
/// inference's fed-back outputs. A new `Feedback`, or one [`Feedback::reset`], starts a new
/// sequence of inferences (a new request): its first inference takes every input from the host.
pub struct Feedback {
    pairs: Vec<(usize, usize)>,
    held: Held,
    /// Per pair, the name, element type and shape of the output held.
    infos: Vec<TensorInfo>,
}

enum Held {
    Nothing,
    /// Host tensors, per pair: the default path, which converts them again on the next run.
    Host(Vec<Tensor>),
    /// The session's own values (ONNX Runtime values in the engine's memory...).
    Engine(Box<dyn Any>),
}

/// How a session's [`Session::run_feeding_back`](crate::Session::run_feeding_back) carries the
/// fed-back outputs from one inference to the next, for the record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedbackPath {
    /// Copies of fed-back tensors between the engine's memory and host memory per inference,
    /// out and back in, over every pair.
    pub copies_per_inference: usize,
    /// What happens, in words.
    pub how: String,
}

/// The default [`Session::run_feeding_back`](crate::Session::run_feeding_back)'s path: every
/// fed-back output copied out to the host and back in.
pub fn host_round_trip(pairs: &[(usize, usize)]) -> FeedbackPath {
    FeedbackPath {
        copies_per_inference: 2 * pairs.len(),
        how: "host round trip: Session::run copies each fed-back output into a host tensor, which \
              is moved (not copied) to the next inference, whose Session::run converts it into \
              the engine's form as it does any host input: one copy out, one in"
            .into(),
    }
}

impl Feedback {
    /// `pairs`: `(output, input)` indices of the session, each output feeding that input.
    pub fn new(pairs: Vec<(usize, usize)>) -> Self {
        Feedback {
            pairs,
            held: Held::Nothing,
            infos: Vec::new(),
        }
    }

    pub fn pairs(&self) -> &[(usize, usize)] {
        &self.pairs
    }

    /// Drops what is held: the next inference starts a new sequence from host inputs only.
    pub fn reset(&mut self) {
        // `infos` stays for its buffers; `held` shows nothing while nothing is held.
        self.held = Held::Nothing;
    }

    /// Whether the outputs of an inference are held, to be fed to the next one.
    pub fn holds(&self) -> bool {
        !matches!(self.held, Held::Nothing)
    }

    /// Per pair, the name, element type and shape of the output held (empty before the first
    /// inference of a sequence): what a caller may know of them without a copy.
    pub fn held(&self) -> &[TensorInfo] {
        if self.holds() { &self.infos } else { &[] }
    }

    /// Checks one inference's host inputs (one per model input, `infos`): every one given on the
    /// first inference of a sequence; later, exactly the fed ones left out (`None`).
    pub fn check_inputs(&self, inputs: &[Option<Tensor>], infos: &[TensorInfo]) -> Result<()> {
        if inputs.len() != infos.len() {
            return Err(Error::Run(format!(
                "{} inputs given, the model takes {}",
                inputs.len(),
                infos.len()
            )));
        }
        for (i, (given, info)) in inputs.iter().zip(infos).enumerate() {
            let fed = self.pairs.iter().any(|&(_, k)| k == i);
            match (given.is_some(), fed && self.holds()) {
                (false, false) if fed => {
                    return Err(Error::input(
                        &info.name,
                        "the first inference of a sequence takes every input from the host, \
                         this fed-back one too (a decoder's empty cache)",
                    ));
                }
                (false, false) => {
                    return Err(Error::input(&info.name, "not given"));
                }
                (true, true) => {
                    return Err(Error::input(
                        &info.name,
                        "given from the host, but it is fed back from the previous inference's \
                         output (leave it out, or reset the feedback to start a new sequence)",
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The default path's inputs for [`Session::run`](crate::Session::run): the host inputs
    /// given, the fed ones from the host tensors held.
    pub fn host_inputs(
        &mut self,
        inputs: Vec<Option<Tensor>>,
        infos: &[TensorInfo],
    ) -> Result<Vec<Tensor>> {
        self.check_inputs(&inputs, infos)?;
        let mut inputs = inputs;
        match std::mem::replace(&mut self.held, Held::Nothing) {
            Held::Nothing => {}
            Held::Host(tensors) => {
                for (&(_, k), t) in self.pairs.iter().zip(tensors) {
                    inputs[k] = Some(t);
                }
            }
            Held::Engine(_) => {
                return Err(Error::Run(
                    "the fed-back outputs are held by a session of another kind".into(),
                ));
            }
        }
        // check_inputs saw every input given or held.
        Ok(inputs.into_iter().flatten().collect())
    }

    /// The default path's outputs (`infos`: the model's outputs): the fed-back ones moved (not
    /// copied) into the feedback, the others returned; `None` where an output is held.
    pub fn hold_host(
        &mut self,
        outputs: Vec<Tensor>,
        infos: &[TensorInfo],
    ) -> Result<Vec<Option<Tensor>>> {
        let mut outputs: Vec<Option<Tensor>> = outputs.into_iter().map(Some).collect();
        let mut held = Vec::with_capacity(self.pairs.len());
        for &(o, _) in &self.pairs {
            let t = outputs.get_mut(o).and_then(Option::take).ok_or_else(|| {
                Error::Run(format!(
                    "output {o} is fed back twice or is not among the {} outputs",
                    outputs.len()
                ))
            })?;
            held.push(t);
        }
        // Updated in place: the names stay, and the shapes' buffers are reused from step to step.
        if self.infos.len() != held.len() {
            self.infos = self
                .pairs
                .iter()
                .map(|&(o, _)| TensorInfo {
                    name: infos
                        .get(o)
                        .map_or_else(|| format!("output {o}"), |i| i.name.clone()),
                    dtype: crate::DType::F32,
                    shape: Vec::new(),
                })
                .collect();
        }
        for (info, t) in self.infos.iter_mut().zip(&held) {
            info.dtype = t.dtype();
            info.shape.clear();
            info.shape.extend_from_slice(t.shape());
        }
        self.held = Held::Host(held);
        Ok(outputs)
    }

    /// Holds a session's own values of the fed-back outputs, with their `infos` (per pair).
    pub fn hold_engine<T: Any>(&mut self, values: T, infos: Vec<TensorInfo>) {
        self.held = Held::Engine(Box::new(values));
        self.infos = infos;
    }

    /// Takes back the values a session of this kind held; `Ok(None)` when nothing is held.
    pub fn take_engine<T: Any>(&mut self) -> Result<Option<T>> {
        match std::mem::replace(&mut self.held, Held::Nothing) {
            Held::Nothing => Ok(None),
            Held::Engine(values) => match values.downcast::<T>() {
                Ok(values) => Ok(Some(*values)),
                Err(values) => {
                    self.held = Held::Engine(values);
                    Err(Error::Run(
                        "the fed-back outputs are held by a session of another kind".into(),
                    ))
                }
            },
            Held::Host(tensors) => {
                self.held = Held::Host(tensors);
                Err(Error::Run(
                    "the fed-back outputs are held as host tensors by another kind of session"
                        .into(),
                ))
            }
        }
    }
}

impl std::fmt::Debug for Feedback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = match self.held {
            Held::Nothing => "nothing",
            Held::Host(_) => "host tensors",
            Held::Engine(_) => "engine values",
        };
        f.debug_struct("Feedback")
            .field("pairs", &self.pairs)
            .field("held", &held)
            .field("infos", &self.infos)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DType, Session};

    /// `y = x + c`, `c_next = c + 1`: the fed-back counter `c` shows which inference it came from.
    struct Counter {
        inputs: Vec<TensorInfo>,
        outputs: Vec<TensorInfo>,
    }

    fn info(name: &str) -> TensorInfo {
        TensorInfo {
            name: name.into(),
            dtype: DType::F32,
            shape: vec![1],
        }
    }

    impl Session for Counter {
        fn inputs(&self) -> &[TensorInfo] {
            &self.inputs
        }
        fn outputs(&self) -> &[TensorInfo] {
            &self.outputs
        }
        fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
            let x = inputs[0].as_slice::<f32>().unwrap()[0];
            let c = inputs[1].as_slice::<f32>().unwrap()[0];
            Ok(vec![
                Tensor::from_vec(vec![1], vec![x + c])?,
                Tensor::from_vec(vec![1], vec![c + 1.0])?,
            ])
        }
        fn threads(&self) -> usize {
            1
        }
    }

    fn scalar(v: f32) -> Option<Tensor> {
        Some(Tensor::from_vec(vec![1], vec![v]).unwrap())
    }

    #[test]
    fn the_default_path_feeds_outputs_back_through_the_host_and_resets() {
        let mut session = Counter {
            inputs: vec![info("x"), info("c")],
            outputs: vec![info("y"), info("c_next")],
        };
        let mut feedback = Feedback::new(vec![(1, 1)]);
        let path = session.feedback_path(feedback.pairs());
        assert_eq!(path.copies_per_inference, 2);
        let mut ys = Vec::new();
        for request in 0..2 {
            feedback.reset();
            assert!(!feedback.holds() && feedback.held().is_empty());
            let mut inputs = vec![scalar(10.0), scalar(0.0)];
            for _ in 0..3 {
                let out = session.run_feeding_back(inputs, &mut feedback).unwrap();
                assert!(out[1].is_none(), "the fed-back output stays held");
                ys.push((
                    request,
                    out[0].as_ref().unwrap().as_slice::<f32>().unwrap()[0],
                ));
                assert_eq!(feedback.held(), [info("c_next")]);
                inputs = vec![scalar(10.0), None];
            }
        }
        // The counter counts within a request and starts again after the reset.
        assert_eq!(
            ys,
            [
                (0, 10.0),
                (0, 11.0),
                (0, 12.0),
                (1, 10.0),
                (1, 11.0),
                (1, 12.0)
            ]
        );
        // A fed input given while held, and one left out on a first inference, are refused.
        let e = session
            .run_feeding_back(vec![scalar(1.0), scalar(0.0)], &mut feedback)
            .unwrap_err();
        assert!(e.to_string().starts_with("input 'c': "), "{e}");
        assert!(e.to_string().contains("fed back"), "{e}");
        feedback.reset();
        let e = session
            .run_feeding_back(vec![scalar(1.0), None], &mut feedback)
            .unwrap_err();
        assert!(e.to_string().contains("first inference"), "{e}");
        // Values a session of another kind held are not taken for host tensors.
        feedback.hold_engine(7u8, vec![info("c_next")]);
        let e = session
            .run_feeding_back(vec![scalar(1.0), None], &mut feedback)
            .unwrap_err();
        assert!(e.to_string().contains("another kind"), "{e}");
    }
}
