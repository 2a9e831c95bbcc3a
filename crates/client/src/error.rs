//! What a call can end with besides its answer: a business rejection (a value of the
//! engine, carried as an error by the typed command methods) or a fault.

use serde::Serialize;
use tradelog_api::proto as pb;
use tradelog_domain as d;

/// A command the engine rejected: the stable code, with the server's name and message for
/// it. Nothing changed but a recorded rejection event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// The code, if this client knows it (`None`: a code added after this client was
    /// built; `number`, `name` and `message` still say what it is).
    pub code: Option<d::RejectCode>,
    /// The stable numeric code (public API, never reused).
    pub number: i32,
    /// The code's wire name, e.g. `REJECT_CODE_INSUFFICIENT_FUNDS`.
    pub name: String,
    /// A short explanation from the server, e.g. `insufficient funds`.
    pub message: String,
    /// For linked batches, the 0-based index of the transfer that failed (0 otherwise).
    pub index: u32,
}

impl Rejection {
    /// The code's name without the `REJECT_CODE_` prefix, e.g. `INSUFFICIENT_FUNDS`.
    pub fn short_name(&self) -> &str {
        self.name.strip_prefix("REJECT_CODE_").unwrap_or(&self.name)
    }

    pub(crate) fn from_wire(r: pb::Rejection) -> Rejection {
        let code = u16::try_from(r.reject_code)
            .ok()
            .and_then(d::RejectCode::from_code);
        let name = match (r.name.is_empty(), code) {
            (false, _) => r.name,
            (true, Some(c)) => tradelog_api::reject_code_name(c).to_owned(),
            (true, None) => "REJECT_CODE_UNKNOWN".to_owned(),
        };
        let message = match (r.message.is_empty(), code) {
            (false, _) => r.message,
            (true, Some(c)) => c.message().to_owned(),
            (true, None) => "rejected".to_owned(),
        };
        Rejection {
            code,
            number: r.reject_code,
            name,
            message,
            index: r.index,
        }
    }
}

impl From<d::Rejection> for Rejection {
    fn from(r: d::Rejection) -> Rejection {
        Rejection::from_wire(r.into())
    }
}

impl std::fmt::Display for Rejection {
    /// `INSUFFICIENT_FUNDS (10): insufficient funds`, plus the index in a linked batch.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.short_name(),
            self.number,
            self.message
        )?;
        if self.index > 0 {
            write!(f, " (transfer #{} of the batch)", self.index)?;
        }
        Ok(())
    }
}

/// Why a call did not return its answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The engine rejected the command (a business rule: funds, ticks, ownership, ...).
    /// Only the typed command methods return this; `submit` returns it as a value.
    #[error("rejected: {0}")]
    Rejected(Rejection),
    /// A shard's queue was full and the server refused the command without recording
    /// it. Retryable: the client retries it (see [`RetryPolicy`](crate::RetryPolicy)).
    #[error("the server is overloaded, retry later: {message}")]
    Overloaded {
        /// The server's message.
        message: String,
    },
    /// The server could not be reached, is shutting down, or a shard failed. A command
    /// may or may not have been applied: resend it with the same idempotency key.
    #[error("the tradelog server at {endpoint} is unavailable: {message}")]
    Unavailable {
        /// Where the client was talking to.
        endpoint: String,
        /// What went wrong (transport error chain or server message).
        message: String,
    },
    /// No answer within the request timeout. A command may or may not have been applied:
    /// resend it with the same idempotency key.
    #[error("no answer from {endpoint} within {timeout_ms} ms")]
    Timeout {
        /// Where the client was talking to.
        endpoint: String,
        /// The request timeout.
        timeout_ms: u64,
    },
    /// The request was malformed (the server names the field); nothing was recorded.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// No such account, market or open order.
    #[error("not found: {0}")]
    NotFound(String),
    /// A point outside the history the server can answer for (an as-of point beyond what
    /// a shard applied, or in the future).
    #[error("out of range: {0}")]
    OutOfRange(String),
    /// The client's configuration is unusable (e.g. an endpoint that is not a URI).
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// The server's answer does not decode to the domain types (a server bug, or a
    /// server newer than this client in a way it cannot skip).
    #[error("invalid answer from the server: {0}")]
    InvalidResponse(String),
    /// The node holds no replica of a shard the call needs (a cluster whose nodes hold
    /// only some shards). The client sends the call again to a node that holds it, so
    /// this reaches the caller only when no node could answer.
    #[error("{message}")]
    WrongNode {
        /// The shard.
        shard: d::ShardId,
        /// The cluster map version the node answered by.
        map_version: u64,
        /// The server's message.
        message: String,
    },
    /// Any other gRPC status.
    #[error("gRPC status {code}: {message}")]
    Status {
        /// The status code's name.
        code: String,
        /// The message.
        message: String,
    },
}

impl ClientError {
    /// The typed error of a gRPC status.
    pub(crate) fn from_status(s: tonic::Status, endpoint: &str) -> ClientError {
        use tonic::Code;
        let message = s.message().to_owned();
        match s.code() {
            Code::InvalidArgument => ClientError::InvalidArgument(message),
            Code::NotFound => ClientError::NotFound(message),
            Code::OutOfRange => ClientError::OutOfRange(message),
            Code::ResourceExhausted => ClientError::Overloaded { message },
            // The server never cancels a call it answers: a cancelled call is one whose
            // connection went away (the node stopped mid-call), so it may have applied.
            Code::Unavailable | Code::Cancelled => ClientError::Unavailable {
                endpoint: endpoint.to_owned(),
                message: with_sources(&message, &s),
            },
            Code::Unknown if std::error::Error::source(&s).is_some() => ClientError::Unavailable {
                endpoint: endpoint.to_owned(),
                message: with_sources(&message, &s),
            },
            Code::FailedPrecondition
                if s.metadata()
                    .get(ERROR_KIND_HEADER)
                    .and_then(|v| v.to_str().ok())
                    == Some("wrong-node") =>
            {
                let number = |key: &str| {
                    s.metadata()
                        .get(key)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                };
                match (
                    number(SHARD_HEADER).and_then(|n| u32::try_from(n).ok()),
                    number(MAP_VERSION_HEADER),
                ) {
                    (Some(shard), Some(map_version)) => ClientError::WrongNode {
                        shard: d::ShardId(shard),
                        map_version,
                        message,
                    },
                    _ => ClientError::Status {
                        code: "FailedPrecondition".into(),
                        message,
                    },
                }
            }
            code => ClientError::Status {
                code: format!("{code:?}"),
                message,
            },
        }
    }

    /// True for [`Overloaded`](ClientError::Overloaded), [`Unavailable`](ClientError::Unavailable)
    /// and [`Timeout`](ClientError::Timeout): the server did not answer, so trying again
    /// later (with the same idempotency key) may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ClientError::Overloaded { .. }
                | ClientError::Unavailable { .. }
                | ClientError::Timeout { .. }
        )
    }

    /// The rejection, if this is one.
    pub fn rejection(&self) -> Option<&Rejection> {
        match self {
            ClientError::Rejected(r) => Some(r),
            _ => None,
        }
    }
}

/// gRPC response metadata naming the kind of a `FAILED_PRECONDITION` answer (the server's
/// `x-tradelog-error`).
const ERROR_KIND_HEADER: &str = "x-tradelog-error";
/// The shard a `wrong-node` answer is about.
const SHARD_HEADER: &str = "x-tradelog-shard";
/// The cluster map version a `wrong-node` answer was given by.
const MAP_VERSION_HEADER: &str = "x-tradelog-map-version";

/// `message`, followed by the chain of causes of `e` that add something to it.
pub(crate) fn with_sources(message: &str, e: &dyn std::error::Error) -> String {
    let mut out = message.to_owned();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_cut_off_by_a_stopping_node_is_unavailable() {
        for s in [
            tonic::Status::cancelled("operation was canceled"),
            tonic::Status::unavailable("shard 0 has no leader"),
        ] {
            let e = ClientError::from_status(s, "http://127.0.0.1:1");
            assert!(
                matches!(e, ClientError::Unavailable { .. }),
                "{e:?} must be retryable with the same idempotency key"
            );
        }
        let mut s = tonic::Status::failed_precondition("not here");
        s.metadata_mut()
            .insert(ERROR_KIND_HEADER, "wrong-node".parse().unwrap());
        s.metadata_mut().insert(SHARD_HEADER, "3".parse().unwrap());
        s.metadata_mut()
            .insert(MAP_VERSION_HEADER, "17".parse().unwrap());
        assert_eq!(
            ClientError::from_status(s, "e"),
            ClientError::WrongNode {
                shard: d::ShardId(3),
                map_version: 17,
                message: "not here".into()
            }
        );
        // Without the metadata, a plain status.
        assert_eq!(
            ClientError::from_status(tonic::Status::failed_precondition("x"), "e"),
            ClientError::Status {
                code: "FailedPrecondition".into(),
                message: "x".into()
            }
        );
        let e = ClientError::from_status(tonic::Status::internal("x"), "e");
        assert_eq!(
            e,
            ClientError::Status {
                code: "Internal".into(),
                message: "x".into()
            }
        );
    }
}
