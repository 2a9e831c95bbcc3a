//! Named limits. Every collection and every number a client controls has one.

/// Largest amount (in minor units) a single command may move. Keeps every sum of two
/// balances far from `u64` overflow checks being the only line of defence.
pub const AMOUNT_MAX: u64 = 1 << 62;
/// Largest number of transfers in one linked (all-or-nothing) batch.
pub const LINKED_BATCH_LEN_MAX: usize = 8_190;
/// Largest number of distinct assets one account may hold a balance in.
pub const ACCOUNT_ASSETS_MAX: usize = 64;
/// Largest fee rate, in basis points (10% of the notional).
pub const FEE_BPS_MAX: u32 = 1_000;
/// Largest price collar, in basis points of the reference price.
pub const COLLAR_BPS_MAX: u32 = 100_000;
/// Longest pending-transfer timeout (about 30 days).
pub const PENDING_TIMEOUT_MS_MAX: u64 = 30 * 24 * 3_600 * 1_000;
/// Longest asset code, in bytes.
pub const ASSET_CODE_LEN_MAX: usize = 12;
/// Largest asset scale (number of decimal minor-unit digits).
pub const ASSET_SCALE_MAX: u8 = 18;
/// How long an idempotency key (client order id, transfer id) of an accepted command is
/// remembered for deduplication, in leader time: at least this long and less than twice
/// this long (keys expire a generation at a time). After twice the window the key may be
/// reused.
pub const IDEMPOTENCY_WINDOW_MS: u64 = 24 * 3_600 * 1_000;
/// Largest number of shards a placement may name.
pub const SHARD_COUNT_MAX: u32 = 4_096;
/// Most splits one placement records (every account lookup walks them).
pub const SPLITS_MAX: usize = 64;
/// Largest modulus of a split rule (a split by `id % modulus`).
pub const SPLIT_MODULUS_MAX: u64 = 1 << 32;
/// Most markets one split moves.
pub const SPLIT_MARKETS_MAX: usize = 1_024;
/// Largest number of resting orders one market's book may hold.
pub const BOOK_ORDERS_MAX: usize = 16_000_000;
/// Largest number of price levels one side of a book may hold.
pub const BOOK_LEVELS_MAX: usize = 1_000_000;
/// Largest number of open orders one account may have.
pub const ACCOUNT_OPEN_ORDERS_MAX: u32 = 10_000;
/// Largest number of trades one incoming order may produce; the rest of an IOC/market order
/// is cancelled, the rest of a GTC order rests (or is cancelled if it would still cross).
pub const ORDER_FILLS_MAX: usize = 10_000;
