//! Adam with parameter groups and saveable state, so a resumed run continues exactly.

use tch::Tensor;

/// One parameter with its Adam moments and learning rate.
struct Slot {
    name: String,
    param: Tensor,
    m: Tensor,
    v: Tensor,
    lr: f64,
}

/// Adam (Kingma & Ba) with decoupled per-parameter learning rates and optional L2 decay.
pub struct Adam {
    slots: Vec<Slot>,
    step: i64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
}

impl Adam {
    /// An optimiser with no parameters yet.
    pub fn new(weight_decay: f64) -> Self {
        Adam {
            slots: Vec::new(),
            step: 0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        }
    }

    /// Adds a named parameter with its learning rate.
    pub fn add(&mut self, name: String, param: Tensor, lr: f64) {
        let m = param.zeros_like();
        let v = param.zeros_like();
        self.slots.push(Slot {
            name,
            param,
            m,
            v,
            lr,
        });
    }

    /// Number of trainable parameters (elements).
    pub fn numel(&self) -> i64 {
        self.slots.iter().map(|s| s.param.numel() as i64).sum()
    }

    /// Clears every gradient.
    pub fn zero_grad(&mut self) {
        for s in &mut self.slots {
            let mut g = s.param.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
    }

    /// One Adam step on the current gradients.
    pub fn step(&mut self) {
        self.step += 1;
        let bc1 = 1.0 - self.beta1.powi(self.step as i32);
        let bc2 = 1.0 - self.beta2.powi(self.step as i32);
        tch::no_grad(|| {
            for s in &mut self.slots {
                let g = s.param.grad();
                if !g.defined() {
                    continue;
                }
                let g = if self.weight_decay > 0.0 {
                    g + &s.param * self.weight_decay
                } else {
                    g
                };
                let _ = s.m.g_mul_scalar_(self.beta1);
                let _ = s.m.g_add_(&(&g * (1.0 - self.beta1)));
                let _ = s.v.g_mul_scalar_(self.beta2);
                let _ = s.v.g_add_(&(&g * &g * (1.0 - self.beta2)));
                let denom = (&s.v / bc2).sqrt() + self.eps;
                let update = &s.m / denom * (s.lr / bc1);
                let _ = s.param.g_sub_(&update);
            }
        });
    }

    /// The state to checkpoint: moments as named tensors, and the step count.
    pub fn state(&self) -> (Vec<(String, Tensor)>, i64) {
        let mut t = Vec::new();
        for s in &self.slots {
            t.push((format!("optim.m.{}", s.name), s.m.shallow_clone()));
            t.push((format!("optim.v.{}", s.name), s.v.shallow_clone()));
        }
        (t, self.step)
    }

    /// Restores moments saved by [`Adam::state`]; a missing or mis-shaped moment is an error.
    pub fn restore(
        &mut self,
        tensors: &std::collections::HashMap<String, Tensor>,
        step: i64,
    ) -> Result<(), String> {
        for s in &mut self.slots {
            for (which, dst) in [("m", &mut s.m), ("v", &mut s.v)] {
                let key = format!("optim.{which}.{}", s.name);
                let src = tensors
                    .get(&key)
                    .ok_or_else(|| format!("missing optimiser tensor `{key}`"))?;
                if src.size() != dst.size() {
                    return Err(format!(
                        "optimiser tensor `{key}` has shape {:?}, expected {:?}",
                        src.size(),
                        dst.size()
                    ));
                }
                tch::no_grad(|| dst.copy_(src));
            }
        }
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn adam_minimises_a_quadratic_and_matches_reference_first_step() {
        let x = Tensor::from_slice(&[3.0f64, -2.0]).set_requires_grad(true);
        let mut opt = Adam::new(0.0);
        opt.add("x".into(), x.shallow_clone(), 0.1);
        // First Adam step moves every coordinate by exactly lr against the gradient sign.
        opt.zero_grad();
        (&x * &x).sum(Kind::Double).backward();
        opt.step();
        let v: Vec<f64> = Vec::try_from(x.detach()).unwrap();
        assert!(
            (v[0] - 2.9).abs() < 1e-6 && (v[1] + 1.9).abs() < 1e-6,
            "{v:?}"
        );
        for _ in 0..500 {
            opt.zero_grad();
            (&x * &x).sum(Kind::Double).backward();
            opt.step();
        }
        let n = x.detach().abs().max().double_value(&[]);
        assert!(n < 0.05, "{n}");
        let _ = Device::Cpu;
    }
}
