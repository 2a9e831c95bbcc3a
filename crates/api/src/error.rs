//! The one error type of every wire-to-domain conversion.

/// A request (or a message decoded from the wire) that is not well formed: the field that
/// is wrong and why.
///
/// This is a *validation* error, detected before anything reaches a shard: the server
/// answers it with gRPC status `INVALID_ARGUMENT` and records nothing. Business rules
/// (funds, ticks, lots, amounts, ...) are the engine's, answered with a stable
/// [`RejectCode`](tradelog_domain::RejectCode) in an `Outcome`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid field `{field}`: {reason}")]
pub struct ApiError {
    /// Path of the offending field from the root of the message that was converted, in
    /// protobuf field names: `transfer.debit_account_id`, `transfers[3].amount`,
    /// `commands[0].place_order.side`.
    pub field: String,
    /// What is wrong with it.
    pub reason: Reason,
}

/// What is wrong with a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    /// A required message field, oneof or enum is not set (enums: the `*_UNSPECIFIED`
    /// zero value).
    #[error("required field is not set")]
    Missing,
    /// An enum field holds a number the API does not define.
    #[error("unknown enum value {0}")]
    UnknownEnumValue(i32),
    /// An id that must not be zero is zero.
    #[error("must not be zero")]
    Zero,
    /// A string or list that must not be empty is empty.
    #[error("must not be empty")]
    Empty,
    /// A string is longer than its limit.
    #[error("too long: {len} bytes, at most {max}")]
    TooLong {
        /// Its length, in bytes.
        len: usize,
        /// The limit, in bytes.
        max: usize,
    },
    /// A list has more items than its limit.
    #[error("too many items: {len}, at most {max}")]
    TooMany {
        /// Its number of items.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A number is above its limit (or above what the domain type can hold).
    #[error("too large: {value}, at most {max}")]
    TooLarge {
        /// The value.
        value: u64,
        /// The largest allowed value.
        max: u64,
    },
    /// An entry that must be unique appears twice (e.g. a shard in a `Position`).
    #[error("duplicate entry {0}")]
    Duplicate(u64),
    /// A range ends before it starts.
    #[error("range ends ({to}) before it starts ({from})")]
    InvalidRange {
        /// Start.
        from: u64,
        /// End.
        to: u64,
    },
    /// A decimal number string that is not one (or does not fit 128 bits).
    #[error("not an unsigned decimal number")]
    NotANumber,
    /// The field is set together with another one it cannot be combined with.
    #[error("cannot be combined with `{0}`")]
    Excludes(&'static str),
}

impl ApiError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, reason: Reason) -> ApiError {
        ApiError {
            field: field.into(),
            reason,
        }
    }

    /// The same error, seen from the message that holds `parent`: `parent.field`.
    #[must_use]
    pub fn inside(mut self, parent: &str) -> ApiError {
        self.field = join(parent, &self.field);
        self
    }

    /// The same error, seen from the message that holds the list `parent`, whose item
    /// `index` it is about: `parent[index].field`.
    #[must_use]
    pub fn inside_item(mut self, parent: &str, index: usize) -> ApiError {
        self.field = join(&format!("{parent}[{index}]"), &self.field);
        self
    }
}

fn join(parent: &str, field: &str) -> String {
    if field.is_empty() {
        parent.to_owned()
    } else {
        format!("{parent}.{field}")
    }
}

impl From<ApiError> for tonic::Status {
    /// `INVALID_ARGUMENT`, with the message `invalid field `path`: reason`.
    fn from(e: ApiError) -> tonic::Status {
        tonic::Status::invalid_argument(e.to_string())
    }
}

/// A field check result.
pub(crate) type Res<T> = Result<T, ApiError>;

/// `v`, or [`Reason::Zero`].
pub(crate) fn nonzero<T: PartialEq + Default + Copy>(v: T, field: &'static str) -> Res<T> {
    if v == T::default() {
        Err(ApiError::new(field, Reason::Zero))
    } else {
        Ok(v)
    }
}

/// The value of a required message field, or [`Reason::Missing`].
pub(crate) fn required<T>(v: Option<T>, field: &'static str) -> Res<T> {
    v.ok_or_else(|| ApiError::new(field, Reason::Missing))
}

/// A known enum value of a raw `i32` enum field, or [`Reason::UnknownEnumValue`].
pub(crate) fn known<E: TryFrom<i32>>(v: i32, field: &'static str) -> Res<E> {
    E::try_from(v).map_err(|_| ApiError::new(field, Reason::UnknownEnumValue(v)))
}

/// At most `max` items, or [`Reason::TooMany`].
pub(crate) fn at_most_items(len: usize, max: usize, field: &'static str) -> Res<()> {
    if len > max {
        Err(ApiError::new(field, Reason::TooMany { len, max }))
    } else {
        Ok(())
    }
}

/// `v` if it is at most `max`, or [`Reason::TooLarge`].
pub(crate) fn at_most(v: u64, max: u64, field: &'static str) -> Res<u64> {
    if v > max {
        Err(ApiError::new(field, Reason::TooLarge { value: v, max }))
    } else {
        Ok(v)
    }
}

/// A shard id a placement can name (below [`SHARD_COUNT_MAX`](tradelog_domain::SHARD_COUNT_MAX)).
pub(crate) fn shard(v: u32, field: &'static str) -> Res<tradelog_domain::ShardId> {
    at_most(
        u64::from(v),
        u64::from(tradelog_domain::SHARD_COUNT_MAX - 1),
        field,
    )?;
    Ok(tradelog_domain::ShardId(v))
}
