//! Activation functions, defined once for every backend.

use crate::Float;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// An elementwise activation. Every derivative is computed from the activation's
/// *output*, so the forward pass need not keep the pre-activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// The identity (used for the output layer's logits).
    Identity,
    /// 1 / (1 + e^-x).
    Sigmoid,
    /// tanh(x).
    Tanh,
    /// max(0, x).
    Relu,
    /// x for x > 0, 0.01·x otherwise (PyTorch's default slope).
    LeakyRelu,
    /// x for x > 0, e^x − 1 otherwise (α = 1).
    Elu,
}

/// The slope of [`Activation::LeakyRelu`] for negative inputs.
pub const LEAKY_RELU_SLOPE: f64 = 0.01;

impl Activation {
    /// The activations a user can choose for hidden layers.
    pub const HIDDEN: [Activation; 5] = [
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Relu,
        Activation::LeakyRelu,
        Activation::Elu,
    ];

    /// The name users write in trial files.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Identity => "identity",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Relu => "relu",
            Activation::LeakyRelu => "leaky_relu",
            Activation::Elu => "elu",
        }
    }

    /// f(x).
    #[inline(always)]
    pub fn forward<T: Float>(self, x: T) -> T {
        match self {
            Activation::Identity => x,
            Activation::Sigmoid => T::ONE / (T::ONE + (-x).exp()),
            Activation::Tanh => x.tanh(),
            Activation::Relu => {
                if x > T::ZERO {
                    x
                } else {
                    T::ZERO
                }
            }
            Activation::LeakyRelu => {
                if x > T::ZERO {
                    x
                } else {
                    x * T::from_f64(LEAKY_RELU_SLOPE)
                }
            }
            Activation::Elu => {
                if x > T::ZERO {
                    x
                } else {
                    x.exp() - T::ONE
                }
            }
        }
    }

    /// f'(x), given y = f(x).
    #[inline(always)]
    pub fn derivative_from_output<T: Float>(self, y: T) -> T {
        match self {
            Activation::Identity => T::ONE,
            Activation::Sigmoid => y * (T::ONE - y),
            Activation::Tanh => T::ONE - y * y,
            Activation::Relu => {
                if y > T::ZERO {
                    T::ONE
                } else {
                    T::ZERO
                }
            }
            Activation::LeakyRelu => {
                if y > T::ZERO {
                    T::ONE
                } else {
                    T::from_f64(LEAKY_RELU_SLOPE)
                }
            }
            Activation::Elu => {
                if y > T::ZERO {
                    T::ONE
                } else {
                    y + T::ONE
                }
            }
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Activation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Activation::HIDDEN
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Activation::HIDDEN.iter().map(|a| a.name()).collect();
                format!(
                    "unknown activation \"{s}\"; expected one of {}",
                    names.join(", ")
                )
            })
    }
}
