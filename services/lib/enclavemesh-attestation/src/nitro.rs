//! The real Nitro Secure Module behind `/dev/nsm`, through `aws-nitro-enclaves-nsm-api`.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;

use aws_nitro_enclaves_nsm_api::api::{Request, Response};
use aws_nitro_enclaves_nsm_api::driver::nsm_process_request;
use serde_bytes::ByteBuf;

use crate::error::NsmError;
use crate::nsm::{Nsm, check_field_sizes};

/// Path of the NSM device inside an enclave.
pub const NSM_DEVICE: &str = "/dev/nsm";

/// Handle to `/dev/nsm`. The descriptor is owned by a `File`, so it is closed on drop.
#[derive(Debug)]
pub struct NitroNsm {
    device: File,
}

impl NitroNsm {
    /// Open `/dev/nsm`. Outside an enclave this fails with [`NsmError::NotInEnclave`], whose
    /// message tells the operator to use the simulated NSM for dev mode.
    pub fn open() -> Result<Self, NsmError> {
        Self::open_path(Path::new(NSM_DEVICE))
    }

    fn open_path(path: &Path) -> Result<Self, NsmError> {
        if !path.exists() {
            return Err(NsmError::NotInEnclave);
        }
        // Same flags as the nsm-api driver's nsm_init(), but keeping the io::Error.
        let device = OpenOptions::new().read(true).write(true).open(path).map_err(NsmError::Open)?;
        Ok(NitroNsm { device })
    }

    fn call(&self, name: &'static str, request: Request) -> Result<Response, NsmError> {
        match nsm_process_request(self.device.as_raw_fd(), request) {
            Response::Error(code) => {
                Err(NsmError::Request { request: name, reason: format!("NSM error code {code:?}") })
            }
            other => Ok(other),
        }
    }
}

impl Nsm for NitroNsm {
    fn attestation(
        &self,
        user_data: Option<&[u8]>,
        nonce: Option<&[u8]>,
        public_key: Option<&[u8]>,
    ) -> Result<Vec<u8>, NsmError> {
        check_field_sizes(user_data, nonce, public_key)?;
        let buf = |b: Option<&[u8]>| b.map(|b| ByteBuf::from(b.to_vec()));
        let request =
            Request::Attestation { user_data: buf(user_data), nonce: buf(nonce), public_key: buf(public_key) };
        match self.call("Attestation", request)? {
            Response::Attestation { document } => Ok(document),
            other => {
                Err(NsmError::Request { request: "Attestation", reason: format!("unexpected response {other:?}") })
            }
        }
    }

    fn describe_pcr(&self, index: u16) -> Result<Vec<u8>, NsmError> {
        match self.call("DescribePCR", Request::DescribePCR { index })? {
            Response::DescribePCR { data, .. } => Ok(data),
            other => {
                Err(NsmError::Request { request: "DescribePCR", reason: format!("unexpected response {other:?}") })
            }
        }
    }

    fn kind(&self) -> &'static str {
        "nitro"
    }
}
