//! The hidden-layer activation a trial names: a name, not a function.
//!
//! The arithmetic lives in `gradsweep_kernels::Activation`; this enum is what a trial
//! file and a sweep spec say, so that the coordinator can parse specs without linking
//! the kernels. The worker converts it (`gradsweep_worker::train::kernel_activation`).

use serde::{Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// An activation a user can choose for the hidden layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Activation {
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

impl Activation {
    /// Every activation, in the order listed to users.
    pub const ALL: [Activation; 5] = [
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Relu,
        Activation::LeakyRelu,
        Activation::Elu,
    ];

    /// The name users write in trial files.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Relu => "relu",
            Activation::LeakyRelu => "leaky_relu",
            Activation::Elu => "elu",
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
        Activation::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Activation::ALL.iter().map(|a| a.name()).collect();
                format!(
                    "unknown activation \"{s}\"; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

impl Serialize for Activation {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back() {
        for a in Activation::ALL {
            assert_eq!(a.name().parse::<Activation>(), Ok(a));
            assert_eq!(a.to_string(), a.name());
            assert_eq!(serde_json::to_value(a).unwrap(), a.name());
        }
        assert_eq!(
            "identity".parse::<Activation>().unwrap_err(),
            "unknown activation \"identity\"; expected one of sigmoid, tanh, relu, leaky_relu, elu"
        );
    }
}
