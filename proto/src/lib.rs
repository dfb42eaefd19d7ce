//! The wire types of gradsweep: `proto/sweep.proto`'s messages (prost) and its two
//! services (tonic), generated at build time and never edited by hand.
//!
//! # Layout
//!
//! - [`v1`]: everything `sweep.proto` declares, in package `gradsweep.v1`; also
//!   re-exported at the crate root. Clients are in [`v1::sweep_service_client`] and
//!   [`v1::worker_service_client`], servers in [`v1::sweep_service_server`] and
//!   [`v1::worker_service_server`].
//! - [`client`]: how clients and workers reach the coordinator (TLS, `--ca`, the
//!   token, one-line transport errors).
//! - [`FILE_DESCRIPTOR_SET`]: the encoded descriptors of `sweep.proto`, which the
//!   coordinator serves by reflection.

pub mod client;

/// `sweep.proto`'s descriptors (an encoded `google.protobuf.FileDescriptorSet`), for
/// gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/gradsweep_descriptor.bin"));

/// Package `gradsweep.v1` of `sweep.proto`.
pub mod v1 {
    // Generated code: its doc comments come from the .proto file, where not every
    // field has one.
    #![allow(missing_docs)]
    // Generated code: prost and tonic's output is not ours to restyle.
    #![allow(clippy::all)]
    tonic::include_proto!("gradsweep.v1");
}

pub use v1::*;

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn a_complete_request_round_trips() {
        let request = CompleteRequest {
            lease: Some(LeaseRef {
                sweep_id: 3,
                index: 17,
                lease_id: 99,
                worker_id: 0,
            }),
            result: Some(TrialResult {
                outcome: Some(Outcome {
                    kind: Some(outcome::Kind::Diverged(Diverged { epoch: 4 })),
                }),
                verdicts: vec![Verdict {
                    name: "vanishing_gradients".into(),
                    flagged: true,
                    reason: "ratio 1e-5 (threshold 1e-3)".into(),
                    ..Verdict::default()
                }],
                gradcheck: Some(GradCheck {
                    layers: vec![LayerGradCheck {
                        layer: "linear1".into(),
                        checked: 64,
                        max_abs_error: 1e-9,
                        max_rel_error: 1e-7,
                        passed: true,
                        ..LayerGradCheck::default()
                    }],
                    passed: true,
                    ..GradCheck::default()
                }),
                dataset_fingerprint: "eb8171ccfd3f2fc8".into(),
                device: "cpu".into(),
                epochs: 4,
                ..TrialResult::default()
            }),
        };
        let bytes = request.encode_to_vec();
        assert_eq!(CompleteRequest::decode(bytes.as_slice()).unwrap(), request);

        let report = EpochReport {
            epoch: 2,
            train_loss: 0.5,
            layers: vec![
                LayerDiagnostics {
                    layer: "linear1".into(),
                    dead_fraction: Some(0.25),
                    ..LayerDiagnostics::default()
                },
                LayerDiagnostics {
                    layer: "linear2".into(),
                    dead_fraction: None,
                    ..LayerDiagnostics::default()
                },
            ],
            ..EpochReport::default()
        };
        let back = EpochReport::decode(report.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back, report);
        assert_eq!(back.layers[1].dead_fraction, None);
        assert_eq!(TrialState::Diverged.as_str_name(), "TRIAL_STATE_DIVERGED");
    }
}
