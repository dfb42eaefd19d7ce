//! Who may call what: two tokens, one per role. Clients (the `sweep` CLI) send the
//! client token and may call only `SweepService`; workers send the worker token and
//! may call only `WorkerService`. Tokens travel as `authorization: Bearer <token>`
//! and are compared in constant time. The health and reflection services take no
//! token (probes send none) and are not wrapped.
//!
//! A role without a token configured is open (a coordinator on loopback for one
//! person); the `coordinator` binary refuses a non-loopback address unless both
//! tokens and TLS are configured (or `--insecure`).

use std::sync::Arc;
use subtle::ConstantTimeEq;
use tonic::{Request, Status};

/// Which service a call is for, and so which token it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `SweepService`: the `sweep` CLI and other clients.
    Client,
    /// `WorkerService`: `worker serve`.
    Worker,
}

impl Role {
    fn service(self) -> &'static str {
        match self {
            Role::Client => "SweepService",
            Role::Worker => "WorkerService",
        }
    }

    fn token_name(self) -> &'static str {
        match self {
            Role::Client => "client token (the coordinator's --client-token-file)",
            Role::Worker => "worker token (the coordinator's --worker-token-file)",
        }
    }

    fn other(self) -> Role {
        match self {
            Role::Client => Role::Worker,
            Role::Worker => Role::Client,
        }
    }
}

/// The tokens the coordinator accepts; a role without one is open.
#[derive(Clone, Default)]
pub struct Tokens {
    client: Option<Arc<[u8]>>,
    worker: Option<Arc<[u8]>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the tokens themselves.
        f.debug_struct("Tokens")
            .field("client", &self.client.is_some())
            .field("worker", &self.worker.is_some())
            .finish()
    }
}

impl Tokens {
    /// Tokens for the two roles (`None`: that role needs none). The same token for
    /// both roles is refused: it would let a worker's machine submit sweeps.
    pub fn new(client: Option<String>, worker: Option<String>) -> Result<Tokens, String> {
        if let (Some(c), Some(w)) = (&client, &worker)
            && c == w
        {
            return Err(
                "--client-token-file and --worker-token-file hold the same token: give each \
                 role its own, so that a worker's machine cannot submit or cancel sweeps"
                    .into(),
            );
        }
        Ok(Tokens {
            client: client.map(|t| Arc::from(t.into_bytes())),
            worker: worker.map(|t| Arc::from(t.into_bytes())),
        })
    }

    /// Whether both roles need a token.
    pub fn both(&self) -> bool {
        self.client.is_some() && self.worker.is_some()
    }

    fn of(&self, role: Role) -> Option<&[u8]> {
        match role {
            Role::Client => self.client.as_deref(),
            Role::Worker => self.worker.as_deref(),
        }
    }

    /// Checks a call for `role`'s service: `UNAUTHENTICATED` when the token is missing
    /// or wrong, `PERMISSION_DENIED` when it is the other role's; each message names
    /// the fix.
    pub fn check(&self, role: Role, request: &Request<()>) -> Result<(), Status> {
        let Some(expected) = self.of(role) else {
            return Ok(());
        };
        let how = "send it with --token-file FILE or GRADSWEEP_TOKEN";
        let Some(value) = request.metadata().get("authorization") else {
            return Err(Status::unauthenticated(format!(
                "no token: {} needs the {}; {how}",
                role.service(),
                role.token_name()
            )));
        };
        let given = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or("");
        if bool::from(given.as_bytes().ct_eq(expected)) {
            return Ok(());
        }
        if let Some(other) = self.of(role.other())
            && bool::from(given.as_bytes().ct_eq(other))
        {
            return Err(Status::permission_denied(format!(
                "this is the {}, which may not call {}: it needs the {}; {how}",
                role.other().token_name(),
                role.service(),
                role.token_name()
            )));
        }
        Err(Status::unauthenticated(format!(
            "wrong token: {} needs the {}; {how}",
            role.service(),
            role.token_name()
        )))
    }

    /// The interceptor that checks `role`'s calls.
    pub fn interceptor(
        &self,
        role: Role,
    ) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone + Send + Sync + 'static
    {
        let tokens = self.clone();
        move |request: Request<()>| {
            tokens.check(role, &request)?;
            Ok(request)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(token: Option<&str>) -> Request<()> {
        let mut r = Request::new(());
        if let Some(t) = token {
            r.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        r
    }

    #[test]
    fn each_role_takes_only_its_own_token() {
        let t = Tokens::new(Some("c".into()), Some("w".into())).unwrap();
        assert!(t.check(Role::Client, &call(Some("c"))).is_ok());
        assert!(t.check(Role::Worker, &call(Some("w"))).is_ok());
        let e = t.check(Role::Client, &call(Some("w"))).unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        let e = t.check(Role::Worker, &call(None)).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert!(e.message().contains("--token-file"), "{}", e.message());
        let e = t.check(Role::Worker, &call(Some("cc"))).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert!(Tokens::new(Some("x".into()), Some("x".into())).is_err());
        assert!(Tokens::default().check(Role::Client, &call(None)).is_ok());
    }
}
