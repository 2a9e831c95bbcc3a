//! The retry policy: bounded attempts with exponential backoff, resending the very same
//! request (same idempotency key), and only when that cannot apply a command twice.

use crate::ClientError;
use std::time::Duration;
use tradelog_domain as d;

/// Default [`RetryPolicy::attempts_max`].
pub const RETRY_ATTEMPTS_MAX_DEFAULT: u32 = 5;
/// Default [`RetryPolicy::backoff_initial_ms`].
pub const RETRY_BACKOFF_INITIAL_MS_DEFAULT: u64 = 25;
/// Default [`RetryPolicy::backoff_ms_max`].
pub const RETRY_BACKOFF_MS_MAX_DEFAULT: u64 = 1_000;

/// When and how often a call is sent again.
///
/// A call is retried only when the server did not answer it:
///
/// * [`ClientError::Overloaded`]: a shard's queue was full and the server refused the
///   command before recording it, so resending can never apply it twice. Always retried
///   (single commands; a batch only when every command in it is [`Repeat::Safe`], since
///   other commands of the batch may have been applied).
/// * [`ClientError::WrongNode`]: the node holds no replica of a shard the call needs and
///   refused it before doing anything; the next attempt goes to a node that holds it.
///   Retried like `Overloaded`.
/// * [`ClientError::Unavailable`]: the server was unreachable, stopping, or the
///   connection broke; the command may have been applied. Retried only for calls that are
///   [`Repeat::Safe`]: queries, and commands the engine answers with their original
///   result when repeated (transfer ids, client order ids, catalog entries).
///
/// Nothing else is retried: rejections are answers, invalid arguments stay invalid, and a
/// [`ClientError::Timeout`] is left to the caller (the server may still be working on
/// it; resend with the same idempotency key). The request is the same bytes every time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Most attempts in all, the first included (1 = never retry).
    pub attempts_max: u32,
    /// Wait before the first retry, in milliseconds; doubled before each next one.
    pub backoff_initial_ms: u64,
    /// Longest wait between two attempts, in milliseconds.
    pub backoff_ms_max: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts_max: RETRY_ATTEMPTS_MAX_DEFAULT,
            backoff_initial_ms: RETRY_BACKOFF_INITIAL_MS_DEFAULT,
            backoff_ms_max: RETRY_BACKOFF_MS_MAX_DEFAULT,
        }
    }
}

impl RetryPolicy {
    /// One attempt, no retry.
    pub const NEVER: RetryPolicy = RetryPolicy {
        attempts_max: 1,
        backoff_initial_ms: 0,
        backoff_ms_max: 0,
    };

    /// The wait before attempt `attempt + 1` after attempt `attempt` (1-based) failed with
    /// `error`, for a call that is `repeat`; `None`: do not retry.
    pub fn next_delay(
        &self,
        attempt: u32,
        error: &ClientError,
        repeat: Repeat,
    ) -> Option<Duration> {
        if attempt >= self.attempts_max {
            return None;
        }
        let retry = match error {
            // Refused before anything was done, like `Overloaded`; the next attempt goes
            // to a node holding the shard.
            ClientError::Overloaded { .. } | ClientError::WrongNode { .. } => {
                repeat != Repeat::Never
            }
            ClientError::Unavailable { .. } => repeat == Repeat::Safe,
            _ => false,
        };
        retry.then(|| Duration::from_millis(self.backoff_ms(attempt)))
    }

    /// The wait after the `attempt`-th failed attempt (1-based): `backoff_initial_ms`
    /// doubled `attempt - 1` times, at most `backoff_ms_max`.
    pub fn backoff_ms(&self, attempt: u32) -> u64 {
        let doublings = attempt.saturating_sub(1).min(32);
        self.backoff_initial_ms
            .saturating_mul(1u64 << doublings)
            .min(self.backoff_ms_max)
    }
}

/// Whether a call may be sent again after a failure that may have reached the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repeat {
    /// Repeating it returns the original result and changes nothing more: queries,
    /// commands with an idempotency key (deposit, withdraw, transfer, linked transfers,
    /// pending transfer creation, an order with a client order id) and catalog commands
    /// (idempotent by content). Retried on `Overloaded` and `Unavailable`.
    Safe,
    /// A repeat could be answered differently (open account: `DUPLICATE_ID`; cancel:
    /// `ORDER_CLOSED`; post/void pending: `PENDING_NOT_OPEN`) or applied twice (an order
    /// without a client order id). Retried only on `Overloaded`, which the server answers
    /// before recording anything.
    IfRefused,
    /// Never retried (a batch with a command that is not `Safe`: other commands of the
    /// batch may have been applied when one is refused).
    Never,
}

impl Repeat {
    /// How a command may be repeated.
    pub fn of(command: &d::Command) -> Repeat {
        use d::Command as C;
        match command {
            C::CreateAsset(_)
            | C::CreateMarket(_)
            | C::Deposit { .. }
            | C::Withdraw { .. }
            | C::Transfer(_)
            | C::LinkedTransfers(_)
            | C::CreatePending { .. } => Repeat::Safe,
            C::PlaceOrder(o) if o.client_order_id != 0 => Repeat::Safe,
            C::PlaceOrder(_)
            | C::OpenAccount { .. }
            | C::PostPending { .. }
            | C::VoidPending { .. }
            | C::FreezeAccount { .. }
            | C::UnfreezeAccount { .. }
            | C::CloseAccount { .. }
            | C::CancelOrder { .. }
            | C::AmendOrder { .. }
            | C::HaltMarket { .. }
            | C::ResumeMarket { .. } => Repeat::IfRefused,
        }
    }

    /// How a batch may be repeated: `Safe` if every command is, else `Never`.
    pub fn of_batch(commands: &[d::Command]) -> Repeat {
        if commands.iter().all(|c| Repeat::of(c) == Repeat::Safe) {
            Repeat::Safe
        } else {
            Repeat::Never
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overloaded() -> ClientError {
        ClientError::Overloaded {
            message: "overloaded, retry".into(),
        }
    }

    fn unavailable() -> ClientError {
        ClientError::Unavailable {
            endpoint: "http://127.0.0.1:1".into(),
            message: "tcp connect error".into(),
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy {
            attempts_max: 10,
            backoff_initial_ms: 25,
            backoff_ms_max: 150,
        };
        let waits: Vec<u64> = (1..=6).map(|a| p.backoff_ms(a)).collect();
        assert_eq!(waits, vec![25, 50, 100, 150, 150, 150]);
        assert_eq!(p.backoff_ms(u32::MAX), 150);
    }

    #[test]
    fn only_unanswered_calls_are_retried_and_only_when_safe() {
        let p = RetryPolicy::default();
        let ms = |d: Option<Duration>| d.map(|d| d.as_millis() as u64);
        assert_eq!(ms(p.next_delay(1, &overloaded(), Repeat::Safe)), Some(25));
        assert_eq!(
            ms(p.next_delay(2, &overloaded(), Repeat::IfRefused)),
            Some(50)
        );
        assert_eq!(p.next_delay(1, &overloaded(), Repeat::Never), None);
        assert_eq!(ms(p.next_delay(1, &unavailable(), Repeat::Safe)), Some(25));
        assert_eq!(p.next_delay(1, &unavailable(), Repeat::IfRefused), None);
        // Refused by a node that holds no replica of the shard: sent again (elsewhere).
        let wrong_node = ClientError::WrongNode {
            shard: d::ShardId(1),
            map_version: 3,
            message: "not here".into(),
        };
        assert_eq!(
            ms(p.next_delay(1, &wrong_node, Repeat::IfRefused)),
            Some(25)
        );
        assert_eq!(p.next_delay(1, &wrong_node, Repeat::Never), None);
        // Bounded.
        assert_eq!(
            p.next_delay(RETRY_ATTEMPTS_MAX_DEFAULT, &overloaded(), Repeat::Safe),
            None
        );
        assert_eq!(
            RetryPolicy::NEVER.next_delay(1, &overloaded(), Repeat::Safe),
            None
        );
        // Answers and faults that a repeat cannot cure.
        let timeout = ClientError::Timeout {
            endpoint: "e".into(),
            timeout_ms: 1,
        };
        for e in [
            timeout,
            ClientError::InvalidArgument("x".into()),
            ClientError::NotFound("x".into()),
            ClientError::Rejected(
                d::Rejection {
                    code: d::RejectCode::InsufficientFunds,
                    index: 0,
                }
                .into(),
            ),
        ] {
            assert_eq!(p.next_delay(1, &e, Repeat::Safe), None, "{e}");
        }
    }

    #[test]
    fn commands_with_an_idempotency_key_are_safe_to_repeat() {
        let order = |client_order_id| {
            d::Command::PlaceOrder(d::NewOrder {
                account: d::AccountId(1),
                market: d::MarketId(1),
                side: d::Side::Buy,
                order_type: d::OrderType::Limit,
                tif: d::TimeInForce::Gtc,
                price: d::Price(1),
                qty: d::Qty(1),
                post_only: false,
                client_order_id,
                stp: d::SelfTradePrevention::CancelResting,
            })
        };
        let deposit = d::Command::Deposit {
            id: d::TransferId(1),
            account: d::AccountId(1),
            asset: d::AssetId(1),
            amount: d::Amount(1),
        };
        let open = d::Command::OpenAccount {
            account: d::AccountId(1),
            owner: d::Principal(1),
        };
        assert_eq!(Repeat::of(&deposit), Repeat::Safe);
        assert_eq!(Repeat::of(&order(7)), Repeat::Safe);
        assert_eq!(Repeat::of(&order(0)), Repeat::IfRefused);
        assert_eq!(Repeat::of(&open), Repeat::IfRefused);
        assert_eq!(Repeat::of_batch(&[deposit.clone(), order(7)]), Repeat::Safe);
        assert_eq!(Repeat::of_batch(&[deposit, open]), Repeat::Never);
    }
}
