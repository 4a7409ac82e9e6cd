//! Packet loss decisions: independent (Bernoulli) loss and bursty (Gilbert-Elliott) loss.
//!
//! Kept apart from the queue and the clock because loss is decided once per packet, on
//! entry, from the RNG alone: the same seed and the same packet sequence give the same
//! losses, whatever the timing. Real long-haul paths lose packets in bursts (a congested
//! hop, a route flap), which is what the Gilbert-Elliott chain is for; independent loss
//! is the simpler, more familiar knob.

use rand::rngs::SmallRng;
use rand::Rng;

use crate::spec::GilbertElliott;

/// Why a packet was lost, if it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossVerdict {
    Keep,
    /// Lost by the Bernoulli draw.
    Random,
    /// Lost by the Gilbert-Elliott chain.
    Burst,
}

/// The loss process of one direction.
#[derive(Debug)]
pub struct LossModel {
    loss: f64,
    ge: Option<GilbertElliott>,
    /// The Gilbert-Elliott chain's state; starts good.
    bad: bool,
}

impl LossModel {
    pub fn new(loss: f64, ge: Option<GilbertElliott>) -> Self {
        LossModel {
            loss,
            ge,
            bad: false,
        }
    }

    /// Decides the fate of one packet. The chain steps first (so its state evolves once per
    /// packet, whatever the Bernoulli draw says), then a packet that survives it faces the
    /// independent loss. The two are independent, so the total mean loss is
    /// `1 - (1 - ge.mean_loss()) · (1 - loss)`.
    pub fn decide(&mut self, rng: &mut SmallRng) -> LossVerdict {
        if let Some(ge) = &self.ge {
            let flip = if self.bad { ge.r } else { ge.p };
            if flip > 0.0 && rng.gen::<f64>() < flip {
                self.bad = !self.bad;
            }
            let deliver = if self.bad { ge.h } else { ge.k };
            if deliver < 1.0 && rng.gen::<f64>() >= deliver {
                return LossVerdict::Burst;
            }
        }
        if self.loss > 0.0 && rng.gen::<f64>() < self.loss {
            return LossVerdict::Random;
        }
        LossVerdict::Keep
    }
}
