//! One mapping from internal failures to gRPC statuses.
//!
//! Each kind of bad input gets its own code so callers (the Temporal worker) can tell
//! "retry later" from "this envelope is forged": see the table in the README.

use enclavemesh_sealing::OpenError;
use tonic::Status;

pub fn open_error(e: &OpenError) -> Status {
    Status::new(e.grpc_code(), format!("cannot open envelope ({}): {e}", e.kind()))
}

pub fn logic_error(e: crate::logic::LogicError) -> Status {
    match e {
        crate::logic::LogicError::InvalidInput(m) => Status::invalid_argument(m),
        crate::logic::LogicError::NotSupported(m) => Status::failed_precondition(m),
    }
}

pub fn decode_error(what: &str, e: enclavemesh_proto::DecodeError) -> Status {
    match e {
        enclavemesh_proto::DecodeError::TooLarge { .. } => Status::resource_exhausted(format!("{what}: {e}")),
        enclavemesh_proto::DecodeError::Malformed(_) => Status::data_loss(format!("{what}: {e}")),
    }
}
