//! The double-entry ledger of one shard: the accounts it owns, their per-asset available and
//! held balances, the holds behind every held unit (orders, pending transfers, cross-shard
//! transfers in flight), and per-asset flow totals that prove nothing is created or
//! destroyed.
//!
//! Owns: balance arithmetic and its invariants. Every operation either applies completely
//! and emits its events, or returns a [`RejectCode`] and changes nothing.
//!
//! Must never depend on: the matching engine, the shard engine, storage, network, clocks,
//! randomness. Time arrives as a [`Timestamp`] argument. Hash maps are only looked up,
//! never iterated, so their order cannot leak into results.

#![forbid(unsafe_code)]

use rustc_hash::FxHashMap;
use std::collections::{BTreeMap, BTreeSet};
use tradelog_domain::*;

/// Lifecycle of an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AccountStatus {
    /// Normal.
    Active,
    /// No new debits, credits or orders.
    Frozen,
    /// Gone for good.
    Closed,
}

/// One asset's balance in one account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Balance {
    /// The asset.
    pub asset: AssetId,
    /// Spendable.
    pub available: Amount,
    /// Reserved for open orders, pending and in-flight transfers.
    pub held: Amount,
}

/// The balances of one account: up to two inline, more on the heap.
pub type Balances = smallvec::SmallVec<[Balance; 2]>;

/// An account owned by this shard.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Account {
    /// Id.
    pub id: AccountId,
    /// Owner.
    pub owner: Principal,
    /// Status.
    pub status: AccountStatus,
    /// Balances, in the order assets were first touched. The first two live inline in the
    /// account (one cache miss fewer per account on the hot path; see
    /// docs/design/0003-engine-performance.md).
    pub balances: Balances,
    /// Number of orders holding funds.
    pub open_orders: u32,
}

impl Account {
    /// The balance of `asset` (zero if never touched).
    pub fn balance(&self, asset: AssetId) -> Balance {
        self.balances
            .iter()
            .find(|b| b.asset == asset)
            .copied()
            .unwrap_or(Balance {
                asset,
                available: Amount::ZERO,
                held: Amount::ZERO,
            })
    }
}

/// Flow totals of one asset on this shard (u128: sums of u64 amounts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AssetTotals {
    /// Sum of deposits.
    pub deposited: u128,
    /// Sum of withdrawals.
    pub withdrawn: u128,
    /// Value that arrived from other shards (settlements, credits, fees).
    pub received: u128,
    /// Value that left for other shards.
    pub sent: u128,
}

/// An open pending (two-phase) transfer.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pending {
    /// Id.
    pub id: TransferId,
    /// Debit account (on this shard).
    pub debit: AccountId,
    /// Credit account (any shard).
    pub credit: AccountId,
    /// Asset.
    pub asset: AssetId,
    /// Held amount.
    pub amount: Amount,
    /// When the timeout voids it.
    pub expires_at: Timestamp,
}

/// A cross-shard transfer whose debit is held here while the credit shard decides.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InFlight {
    /// Id.
    pub id: TransferId,
    /// Debit account (here).
    pub debit: AccountId,
    /// Credit account (remote).
    pub credit: AccountId,
    /// Asset.
    pub asset: AssetId,
    /// Held amount (for a posted pending transfer: the whole pending amount).
    pub amount: Amount,
    /// Amount to credit (at most `amount`; the rest is released when the credit succeeds).
    pub posted: Amount,
    /// For a posted pending transfer, its timeout: if the credit is refused the pending
    /// transfer is open again, exactly as if the post had been rejected.
    pub pending_expires_at: Option<Timestamp>,
}

/// What an order holds on its account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OrderHold {
    /// Account.
    pub account: AccountId,
    /// Held asset.
    pub asset: AssetId,
    /// Amount still held.
    pub amount: Amount,
    /// The client's id for the order (0 = none); kept so a replacement can carry it.
    pub client_order_id: u64,
}

/// A broken ledger invariant (a bug, never a client error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation(pub String);

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The ledger of one shard.
#[derive(Clone, Debug)]
pub struct Ledger {
    accounts: Vec<Account>,
    index: FxHashMap<AccountId, u32>,
    assets: BTreeSet<AssetId>,
    totals: BTreeMap<AssetId, AssetTotals>,
    pending: BTreeMap<TransferId, Pending>,
    expiries: BTreeSet<(Timestamp, TransferId)>,
    inflight: BTreeMap<TransferId, InFlight>,
    order_holds: FxHashMap<OrderId, OrderHold>,
    /// Most this shard may take in net deposits of one asset (see `set_supply_max`).
    supply_max: u64,
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger {
            accounts: Vec::new(),
            index: FxHashMap::default(),
            assets: BTreeSet::new(),
            totals: BTreeMap::new(),
            pending: BTreeMap::new(),
            expiries: BTreeSet::new(),
            inflight: BTreeMap::new(),
            order_holds: FxHashMap::default(),
            supply_max: u64::MAX,
        }
    }
}

type R<T = ()> = Result<T, RejectCode>;

fn check_amount(amount: Amount) -> R {
    if amount.is_zero() {
        return Err(RejectCode::ZeroAmount);
    }
    if amount.0 > AMOUNT_MAX {
        return Err(RejectCode::AmountOverflow);
    }
    Ok(())
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Ledger {
        Ledger::default()
    }

    /// Caps this shard's net deposits (deposits - withdrawals) per asset. With `n` shards
    /// the engine sets `u64::MAX / n`, so an asset's total supply over all shards fits in a
    /// `u64`; since money is conserved, no balance, hold, settlement or fee credit can then
    /// ever overflow, whatever clients do.
    pub fn set_supply_max(&mut self, supply_max: u64) {
        self.supply_max = supply_max;
    }

    // ----- catalog ---------------------------------------------------------------------

    /// Registers a catalog asset.
    pub fn add_asset(&mut self, asset: AssetId) {
        self.assets.insert(asset);
    }

    /// True if the asset is in the catalog.
    pub fn has_asset(&self, asset: AssetId) -> bool {
        self.assets.contains(&asset)
    }

    // ----- queries ---------------------------------------------------------------------

    /// The account, if this shard owns it.
    pub fn account(&self, id: AccountId) -> Option<&Account> {
        self.index.get(&id).map(|&i| &self.accounts[i as usize])
    }

    /// All accounts, in the order they were opened.
    pub fn accounts(&self) -> &[Account] {
        &self.accounts
    }

    /// Flow totals per asset.
    pub fn totals(&self) -> &BTreeMap<AssetId, AssetTotals> {
        &self.totals
    }

    /// Open pending transfers.
    pub fn pending(&self) -> &BTreeMap<TransferId, Pending> {
        &self.pending
    }

    /// Cross-shard transfers waiting for their credit side.
    pub fn inflight(&self) -> &BTreeMap<TransferId, InFlight> {
        &self.inflight
    }

    /// Order holds, sorted by order id.
    pub fn order_holds_sorted(&self) -> Vec<(OrderId, OrderHold)> {
        let mut v: Vec<_> = self.order_holds.iter().map(|(k, v)| (*k, *v)).collect();
        v.sort_unstable_by_key(|(k, _)| *k);
        v
    }

    /// The orders of one account that hold funds, sorted by order id. Looks at every order
    /// hold of the shard (there is no index by account), without copying the others.
    pub fn order_holds_of(&self, account: AccountId) -> Vec<(OrderId, OrderHold)> {
        let mut v: Vec<_> = self
            .order_holds
            .iter()
            .filter(|(_, h)| h.account == account)
            .map(|(k, v)| (*k, *v))
            .collect();
        v.sort_unstable_by_key(|(k, _)| *k);
        v
    }

    /// The hold of one order.
    pub fn order_hold(&self, order: OrderId) -> Option<&OrderHold> {
        self.order_holds.get(&order)
    }

    /// Number of accounts.
    pub fn len(&self) -> usize {
        self.accounts.len()
    }

    /// True if there are no accounts.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }

    // ----- internals -------------------------------------------------------------------

    fn idx(&self, id: AccountId) -> R<usize> {
        self.index
            .get(&id)
            .map(|&i| i as usize)
            .ok_or(RejectCode::UnknownAccount)
    }

    fn active_idx(&self, id: AccountId) -> R<usize> {
        let i = self.idx(id)?;
        match self.accounts[i].status {
            AccountStatus::Active => Ok(i),
            AccountStatus::Frozen => Err(RejectCode::AccountFrozen),
            AccountStatus::Closed => Err(RejectCode::AccountClosed),
        }
    }

    /// Position of the balance entry, creating it (zero) if there is room.
    fn slot(&mut self, i: usize, asset: AssetId) -> R<usize> {
        let b = &mut self.accounts[i].balances;
        if let Some(p) = b.iter().position(|x| x.asset == asset) {
            return Ok(p);
        }
        if b.len() >= ACCOUNT_ASSETS_MAX {
            return Err(RejectCode::LimitExceeded);
        }
        b.push(Balance {
            asset,
            available: Amount::ZERO,
            held: Amount::ZERO,
        });
        Ok(b.len() - 1)
    }

    /// Checks, without changing anything, that `amount` of `asset` can be credited to
    /// account `i` (no overflow, room for a new balance slot).
    fn can_credit(&self, i: usize, asset: AssetId, amount: Amount) -> R {
        match self.existing_slot(i, asset) {
            Some(s) => self.accounts[i].balances[s]
                .available
                .checked_add(amount)
                .map(|_| ())
                .ok_or(RejectCode::AmountOverflow),
            None if self.accounts[i].balances.len() >= ACCOUNT_ASSETS_MAX => {
                Err(RejectCode::LimitExceeded)
            }
            None => Ok(()),
        }
    }

    fn existing_slot(&self, i: usize, asset: AssetId) -> Option<usize> {
        self.accounts[i]
            .balances
            .iter()
            .position(|x| x.asset == asset)
    }

    fn emit_balance(&self, i: usize, slot: usize, sink: &mut EventSink) {
        let a = &self.accounts[i];
        let b = a.balances[slot];
        sink.emit(Event::Balance {
            account: a.id,
            asset: b.asset,
            available: b.available,
            held: b.held,
        });
    }

    fn totals_mut(&mut self, asset: AssetId) -> &mut AssetTotals {
        self.totals.entry(asset).or_default()
    }

    /// Moves `amount` from available to held. Caller checked the account state.
    fn hold(&mut self, i: usize, asset: AssetId, amount: Amount) -> R<usize> {
        let s = self
            .existing_slot(i, asset)
            .ok_or(RejectCode::InsufficientFunds)?;
        let b = &self.accounts[i].balances[s];
        let available = b
            .available
            .checked_sub(amount)
            .ok_or(RejectCode::InsufficientFunds)?;
        let held = b
            .held
            .checked_add(amount)
            .ok_or(RejectCode::AmountOverflow)?;
        let b = &mut self.accounts[i].balances[s];
        b.available = available;
        b.held = held;
        Ok(s)
    }

    /// Moves `amount` from held back to available. Bugs crash: the hold must exist.
    fn unhold(&mut self, i: usize, s: usize, amount: Amount) {
        let b = &mut self.accounts[i].balances[s];
        b.held = b
            .held
            .checked_sub(amount)
            .expect("releasing more than held");
        b.available = b
            .available
            .checked_add(amount)
            .expect("available overflow on release");
    }

    // ----- accounts --------------------------------------------------------------------

    /// Opens an account.
    pub fn open_account(&mut self, id: AccountId, owner: Principal, sink: &mut EventSink) -> R {
        if id.0 == 0 {
            return Err(RejectCode::UnknownAccount);
        }
        if self.index.contains_key(&id) {
            return Err(RejectCode::DuplicateId);
        }
        self.insert_account(id, owner);
        sink.emit(Event::AccountOpened { account: id, owner });
        Ok(())
    }

    fn insert_account(&mut self, id: AccountId, owner: Principal) -> usize {
        let i = self.accounts.len();
        self.accounts.push(Account {
            id,
            owner,
            status: AccountStatus::Active,
            balances: Balances::new(),
            open_orders: 0,
        });
        self.index.insert(id, i as u32);
        i
    }

    /// Freezes an active account.
    pub fn freeze(&mut self, id: AccountId, sink: &mut EventSink) -> R {
        let i = self.idx(id)?;
        if self.accounts[i].status != AccountStatus::Active {
            return Err(RejectCode::InvalidAccountState);
        }
        self.accounts[i].status = AccountStatus::Frozen;
        sink.emit(Event::AccountFrozen { account: id });
        Ok(())
    }

    /// Unfreezes a frozen account.
    pub fn unfreeze(&mut self, id: AccountId, sink: &mut EventSink) -> R {
        let i = self.idx(id)?;
        if self.accounts[i].status != AccountStatus::Frozen {
            return Err(RejectCode::InvalidAccountState);
        }
        self.accounts[i].status = AccountStatus::Active;
        sink.emit(Event::AccountUnfrozen { account: id });
        Ok(())
    }

    /// Closes an account with no funds and no open orders.
    pub fn close(&mut self, id: AccountId, sink: &mut EventSink) -> R {
        let i = self.idx(id)?;
        let a = &self.accounts[i];
        if a.status == AccountStatus::Closed {
            return Err(RejectCode::AccountClosed);
        }
        if a.open_orders > 0
            || a.balances
                .iter()
                .any(|b| !b.available.is_zero() || !b.held.is_zero())
        {
            return Err(RejectCode::AccountNotEmpty);
        }
        self.accounts[i].status = AccountStatus::Closed;
        sink.emit(Event::AccountClosed { account: id });
        Ok(())
    }

    // ----- deposits and withdrawals ----------------------------------------------------

    /// Money enters.
    pub fn deposit(
        &mut self,
        id: TransferId,
        account: AccountId,
        asset: AssetId,
        amount: Amount,
        sink: &mut EventSink,
    ) -> R {
        check_amount(amount)?;
        if !self.has_asset(asset) {
            return Err(RejectCode::UnknownAsset);
        }
        let i = self.active_idx(account)?;
        self.can_credit(i, asset, amount)?;
        let t = self.totals.get(&asset).copied().unwrap_or_default();
        let net = t.deposited as i128 - t.withdrawn as i128 + amount.0 as i128;
        if net > self.supply_max as i128 {
            return Err(RejectCode::LimitExceeded);
        }
        let s = self.slot(i, asset)?;
        let b = &mut self.accounts[i].balances[s];
        b.available = b.available.checked_add(amount).expect("checked");
        self.totals_mut(asset).deposited += amount.0 as u128;
        sink.emit(Event::Deposited {
            id,
            account,
            asset,
            amount,
        });
        self.emit_balance(i, s, sink);
        Ok(())
    }

    /// Money leaves.
    pub fn withdraw(
        &mut self,
        id: TransferId,
        account: AccountId,
        asset: AssetId,
        amount: Amount,
        sink: &mut EventSink,
    ) -> R {
        check_amount(amount)?;
        if !self.has_asset(asset) {
            return Err(RejectCode::UnknownAsset);
        }
        let i = self.active_idx(account)?;
        let s = self
            .existing_slot(i, asset)
            .ok_or(RejectCode::InsufficientFunds)?;
        let b = &mut self.accounts[i].balances[s];
        b.available = b
            .available
            .checked_sub(amount)
            .ok_or(RejectCode::InsufficientFunds)?;
        self.totals_mut(asset).withdrawn += amount.0 as u128;
        sink.emit(Event::Withdrawn {
            id,
            account,
            asset,
            amount,
        });
        self.emit_balance(i, s, sink);
        Ok(())
    }

    // ----- transfers -------------------------------------------------------------------

    fn check_spec(&self, t: &TransferSpec) -> R {
        if t.id.0 == 0 {
            return Err(RejectCode::UnknownTransfer);
        }
        check_amount(t.amount)?;
        if t.debit == t.credit {
            return Err(RejectCode::SameAccount);
        }
        if !self.has_asset(t.asset) {
            return Err(RejectCode::UnknownAsset);
        }
        Ok(())
    }

    /// A transfer whose accounts are both here. Returns the amount moved (smaller than
    /// asked only for balancing transfers).
    pub fn transfer_local(&mut self, t: &TransferSpec, sink: &mut EventSink) -> R<Amount> {
        self.check_spec(t)?;
        let d = self.active_idx(t.debit)?;
        let c = self.active_idx(t.credit)?;
        let ds = self
            .existing_slot(d, t.asset)
            .ok_or(RejectCode::InsufficientFunds)?;
        let avail = self.accounts[d].balances[ds].available;
        let amount = if t.balancing {
            if avail.is_zero() {
                return Err(RejectCode::InsufficientFunds);
            }
            t.amount.min(avail)
        } else {
            t.amount
        };
        let new_debit = avail
            .checked_sub(amount)
            .ok_or(RejectCode::InsufficientFunds)?;
        self.can_credit(c, t.asset, amount)?;
        let cs = self.slot(c, t.asset)?;
        let new_credit = self.accounts[c].balances[cs]
            .available
            .checked_add(amount)
            .expect("checked");
        self.accounts[d].balances[ds].available = new_debit;
        self.accounts[c].balances[cs].available = new_credit;
        sink.emit(Event::TransferPosted {
            id: t.id,
            debit: t.debit,
            credit: t.credit,
            asset: t.asset,
            amount,
        });
        self.emit_balance(d, ds, sink);
        self.emit_balance(c, cs, sink);
        Ok(amount)
    }

    /// All-or-nothing: applies every transfer or none. On failure returns the index of the
    /// failing transfer and its code; state and events are as before the call.
    pub fn transfer_linked(
        &mut self,
        batch: &[TransferSpec],
        sink: &mut EventSink,
    ) -> Result<(), (u32, RejectCode)> {
        if batch.is_empty() || batch.len() > LINKED_BATCH_LEN_MAX {
            return Err((0, RejectCode::LimitExceeded));
        }
        // Save the balances of every account the batch touches; restore them on failure.
        let mut saved: Vec<(usize, Balances)> = Vec::new();
        for t in batch {
            for a in [t.debit, t.credit] {
                if let Ok(i) = self.idx(a) {
                    if !saved.iter().any(|(j, _)| *j == i) {
                        saved.push((i, self.accounts[i].balances.clone()));
                    }
                }
            }
        }
        let mark = sink.mark();
        for (n, t) in batch.iter().enumerate() {
            if let Err(code) = self.transfer_local(t, sink) {
                for (i, b) in saved {
                    self.accounts[i].balances = b;
                }
                sink.rollback(mark);
                return Err((n as u32, code));
            }
        }
        Ok(())
    }

    /// Starts a cross-shard transfer: holds the debit, records it in flight.
    pub fn begin_remote(
        &mut self,
        t: &TransferSpec,
        to: ShardId,
        sink: &mut EventSink,
    ) -> R<Amount> {
        self.check_spec(t)?;
        if self.inflight.contains_key(&t.id) || self.pending.contains_key(&t.id) {
            return Err(RejectCode::DuplicateId);
        }
        let d = self.active_idx(t.debit)?;
        let amount = if t.balancing {
            let avail = self.accounts[d].balance(t.asset).available;
            if avail.is_zero() {
                return Err(RejectCode::InsufficientFunds);
            }
            t.amount.min(avail)
        } else {
            t.amount
        };
        let s = self.hold(d, t.asset, amount)?;
        self.inflight.insert(
            t.id,
            InFlight {
                id: t.id,
                debit: t.debit,
                credit: t.credit,
                asset: t.asset,
                amount,
                posted: amount,
                pending_expires_at: None,
            },
        );
        sink.emit(Event::TransferInitiated {
            id: t.id,
            debit: t.debit,
            credit: t.credit,
            asset: t.asset,
            amount,
            to,
        });
        self.emit_balance(d, s, sink);
        Ok(amount)
    }

    /// The credit side of a cross-shard transfer. On rejection nothing changes and the
    /// caller answers the debit shard with the code.
    #[allow(clippy::too_many_arguments)]
    pub fn credit_remote(
        &mut self,
        id: TransferId,
        debit: AccountId,
        credit: AccountId,
        asset: AssetId,
        amount: Amount,
        from: ShardId,
        sink: &mut EventSink,
    ) -> R {
        if !self.has_asset(asset) {
            return Err(RejectCode::UnknownAsset);
        }
        let c = self.active_idx(credit)?;
        self.can_credit(c, asset, amount)?;
        let s = self.slot(c, asset)?;
        let b = &mut self.accounts[c].balances[s];
        b.available = b.available.checked_add(amount).expect("checked");
        self.totals_mut(asset).received += amount.0 as u128;
        sink.emit(Event::TransferCredited {
            id,
            debit,
            credit,
            asset,
            amount,
            from,
        });
        self.emit_balance(c, s, sink);
        Ok(())
    }

    /// The debit side learns the credit side's answer: finalize or refund. Unknown ids are
    /// a protocol bug (messages are exactly-once) and crash.
    pub fn finish_remote(&mut self, id: TransferId, result: R, sink: &mut EventSink) {
        let f = self
            .inflight
            .remove(&id)
            .expect("credit result for a transfer not in flight");
        let i = self.idx(f.debit).expect("in-flight debit account vanished");
        let s = self
            .existing_slot(i, f.asset)
            .expect("in-flight balance vanished");
        match (result, f.pending_expires_at) {
            (Ok(()), _) => {
                let released = f.amount.checked_sub(f.posted).expect("posted over held");
                let b = &mut self.accounts[i].balances[s];
                b.held = b.held.checked_sub(f.posted).expect("in-flight over held");
                self.unhold(i, s, released);
                self.totals_mut(f.asset).sent += f.posted.0 as u128;
                if f.pending_expires_at.is_some() {
                    sink.emit(Event::PendingPosted {
                        id,
                        amount: f.posted,
                        released,
                    });
                }
                sink.emit(Event::TransferPosted {
                    id,
                    debit: f.debit,
                    credit: f.credit,
                    asset: f.asset,
                    amount: f.posted,
                });
                self.emit_balance(i, s, sink);
            }
            (Err(code), None) => {
                self.unhold(i, s, f.amount);
                sink.emit(Event::TransferRefunded { id, code });
                self.emit_balance(i, s, sink);
            }
            (Err(code), Some(expires_at)) => {
                // The post failed: the pending transfer is open again, funds still held.
                self.pending.insert(
                    id,
                    Pending {
                        id,
                        debit: f.debit,
                        credit: f.credit,
                        asset: f.asset,
                        amount: f.amount,
                        expires_at,
                    },
                );
                self.expiries.insert((expires_at, id));
                sink.emit(Event::TransferRefunded { id, code });
                if expires_at <= sink.timestamp() {
                    self.void_pending(id, true, sink).expect("just reinserted");
                }
            }
        }
    }

    // ----- pending transfers -----------------------------------------------------------

    /// Reserves funds for a two-phase transfer. The credit account is checked when the
    /// transfer is posted (wherever it lives), so the outcome never depends on placement.
    pub fn create_pending(
        &mut self,
        t: &TransferSpec,
        timeout_ms: u64,
        sink: &mut EventSink,
    ) -> R<Amount> {
        self.check_spec(t)?;
        if timeout_ms == 0 || timeout_ms > PENDING_TIMEOUT_MS_MAX {
            return Err(RejectCode::InvalidTimeout);
        }
        if self.pending.contains_key(&t.id) || self.inflight.contains_key(&t.id) {
            return Err(RejectCode::DuplicateId);
        }
        let d = self.active_idx(t.debit)?;
        let amount = if t.balancing {
            let avail = self.accounts[d].balance(t.asset).available;
            if avail.is_zero() {
                return Err(RejectCode::InsufficientFunds);
            }
            t.amount.min(avail)
        } else {
            t.amount
        };
        let s = self.hold(d, t.asset, amount)?;
        let expires_at = sink.timestamp().plus_ms(timeout_ms);
        self.pending.insert(
            t.id,
            Pending {
                id: t.id,
                debit: t.debit,
                credit: t.credit,
                asset: t.asset,
                amount,
                expires_at,
            },
        );
        self.expiries.insert((expires_at, t.id));
        sink.emit(Event::PendingCreated {
            id: t.id,
            debit: t.debit,
            credit: t.credit,
            asset: t.asset,
            amount,
            expires_at,
        });
        self.emit_balance(d, s, sink);
        Ok(amount)
    }

    /// The open pending transfer `id`.
    pub fn pending_transfer(&self, id: TransferId) -> R<&Pending> {
        self.pending.get(&id).ok_or(RejectCode::UnknownTransfer)
    }

    /// Posts a pending transfer. With `remote_to`, the credit lives on that shard: the posted
    /// amount stays held as an in-flight transfer and the caller sends the credit message.
    pub fn post_pending(
        &mut self,
        id: TransferId,
        amount: Option<Amount>,
        remote_to: Option<ShardId>,
        sink: &mut EventSink,
    ) -> R<Amount> {
        let p = self.pending.get(&id).ok_or(RejectCode::UnknownTransfer)?;
        let post = amount.unwrap_or(p.amount);
        if post.is_zero() {
            return Err(RejectCode::ZeroAmount);
        }
        if post > p.amount {
            return Err(RejectCode::PostExceedsPending);
        }
        let d = self.idx(p.debit).expect("pending debit account vanished");
        let ds = self
            .existing_slot(d, p.asset)
            .expect("pending balance vanished");
        let c_slot = match remote_to {
            None => {
                // The credit account must still be active when the transfer is posted.
                let c = self.active_idx(p.credit)?;
                self.can_credit(c, p.asset, post)?;
                Some(c)
            }
            Some(_) => None,
        };
        let p = self.pending.remove(&id).expect("checked above");
        self.expiries.remove(&(p.expires_at, id));
        let released = p.amount.checked_sub(post).expect("checked above");
        if c_slot.is_some() {
            self.unhold(d, ds, released);
        }
        match (c_slot, remote_to) {
            (Some(c), _) => {
                let cs = self.slot(c, p.asset).expect("checked");
                let new_credit = self.accounts[c].balances[cs]
                    .available
                    .checked_add(post)
                    .expect("checked");
                let b = &mut self.accounts[d].balances[ds];
                b.held = b.held.checked_sub(post).expect("post over held");
                self.accounts[c].balances[cs].available = new_credit;
                sink.emit(Event::PendingPosted {
                    id,
                    amount: post,
                    released,
                });
                sink.emit(Event::TransferPosted {
                    id,
                    debit: p.debit,
                    credit: p.credit,
                    asset: p.asset,
                    amount: post,
                });
                self.emit_balance(d, ds, sink);
                self.emit_balance(c, cs, sink);
            }
            (None, Some(to)) => {
                self.inflight.insert(
                    id,
                    InFlight {
                        id,
                        debit: p.debit,
                        credit: p.credit,
                        asset: p.asset,
                        amount: p.amount,
                        posted: post,
                        pending_expires_at: Some(p.expires_at),
                    },
                );
                // Nothing moves until the credit shard answers (see finish_remote).
                sink.emit(Event::TransferInitiated {
                    id,
                    debit: p.debit,
                    credit: p.credit,
                    asset: p.asset,
                    amount: post,
                    to,
                });
            }
            (None, None) => unreachable!("local post always has a credit slot"),
        }
        Ok(post)
    }

    /// Voids a pending transfer, releasing everything.
    pub fn void_pending(&mut self, id: TransferId, expired: bool, sink: &mut EventSink) -> R {
        let p = self
            .pending
            .remove(&id)
            .ok_or(RejectCode::UnknownTransfer)?;
        self.expiries.remove(&(p.expires_at, id));
        let d = self.idx(p.debit).expect("pending debit account vanished");
        let ds = self
            .existing_slot(d, p.asset)
            .expect("pending balance vanished");
        self.unhold(d, ds, p.amount);
        sink.emit(Event::PendingVoided {
            id,
            amount: p.amount,
            expired,
        });
        self.emit_balance(d, ds, sink);
        Ok(())
    }

    /// True if some pending transfer times out at or before `now`.
    pub fn has_due_expiry(&self, now: Timestamp) -> bool {
        self.expiries.first().is_some_and(|(at, _)| *at <= now)
    }

    /// Voids every pending transfer whose timeout is at or before `now`, oldest first.
    pub fn expire(&mut self, now: Timestamp, sink: &mut EventSink) {
        while let Some(&(at, id)) = self.expiries.first() {
            if at > now {
                break;
            }
            self.void_pending(id, true, sink)
                .expect("expiry index points at a pending transfer");
        }
    }

    // ----- orders ----------------------------------------------------------------------

    /// Holds funds for a new order and makes sure both assets of the market have a balance
    /// slot, so that settlement can never be refused later.
    #[allow(clippy::too_many_arguments)]
    pub fn hold_order(
        &mut self,
        order: OrderId,
        account: AccountId,
        asset: AssetId,
        other_asset: AssetId,
        amount: Amount,
        client_order_id: u64,
        sink: &mut EventSink,
    ) -> R {
        check_amount(amount)?;
        let i = self.active_idx(account)?;
        if self.accounts[i].open_orders >= ACCOUNT_OPEN_ORDERS_MAX {
            return Err(RejectCode::LimitExceeded);
        }
        let missing = [asset, other_asset]
            .iter()
            .filter(|a| self.existing_slot(i, **a).is_none())
            .count();
        if self.accounts[i].balances.len() + missing > ACCOUNT_ASSETS_MAX {
            return Err(RejectCode::LimitExceeded);
        }
        let s = self.hold(i, asset, amount)?;
        self.slot(i, other_asset).expect("room checked above");
        self.accounts[i].open_orders += 1;
        let prev = self.order_holds.insert(
            order,
            OrderHold {
                account,
                asset,
                amount,
                client_order_id,
            },
        );
        assert!(prev.is_none(), "order id reused");
        sink.emit(Event::FundsHeld {
            order,
            account,
            asset,
            amount,
        });
        self.emit_balance(i, s, sink);
        Ok(())
    }

    /// Reads an account's index entry and record so that the next access to it hits the
    /// cache; returns a value derived from them so the reads cannot be optimized away.
    /// Changes nothing (see `Engine::apply_batch`).
    #[inline]
    pub fn touch(&self, id: AccountId) -> u64 {
        match self.index.get(&id) {
            Some(&i) => {
                let a = &self.accounts[i as usize];
                a.balances.first().map_or(0, |b| b.available.0) ^ a.open_orders as u64
            }
            None => 0,
        }
    }

    /// Position of a local account (for warming: see [`touch_at`](Self::touch_at)).
    #[inline]
    pub fn position(&self, id: AccountId) -> Option<u32> {
        self.index.get(&id).copied()
    }

    /// Reads the account record at `position` so that the next access hits the cache.
    #[inline]
    pub fn touch_at(&self, position: u32) -> u64 {
        let a = &self.accounts[position as usize];
        a.balances.first().map_or(0, |b| b.available.0) ^ a.open_orders as u64
    }

    /// Owner of a local account.
    pub fn owner(&self, account: AccountId) -> R<Principal> {
        Ok(self.accounts[self.idx(account)?].owner)
    }

    /// Checks that an account can place an order (exists, active).
    pub fn check_active(&self, account: AccountId) -> R {
        self.active_idx(account).map(|_| ())
    }

    /// A fill: take `paid` from the order's hold, credit `received` to available.
    #[allow(clippy::too_many_arguments)]
    pub fn settle(
        &mut self,
        order: OrderId,
        account: AccountId,
        paid_asset: AssetId,
        paid: Amount,
        received_asset: AssetId,
        received: Amount,
        fee: Amount,
        sink: &mut EventSink,
    ) {
        let h = self
            .order_holds
            .get_mut(&order)
            .expect("settlement for an order without a hold");
        assert!(h.account == account && h.asset == paid_asset);
        h.amount = h
            .amount
            .checked_sub(paid)
            .expect("fill paid more than held");
        let i = self.idx(account).expect("settlement account vanished");
        let ps = self
            .existing_slot(i, paid_asset)
            .expect("held slot vanished");
        let rs = self
            .existing_slot(i, received_asset)
            .expect("slot reserved at hold time");
        let b = &mut self.accounts[i].balances[ps];
        b.held = b.held.checked_sub(paid).expect("fill over held");
        let b = &mut self.accounts[i].balances[rs];
        b.available = b
            .available
            .checked_add(received)
            .expect("balance overflow on settlement");
        self.totals_mut(paid_asset).sent += paid.0 as u128;
        self.totals_mut(received_asset).received += received.0 as u128;
        sink.emit(Event::Settled {
            order,
            account,
            paid_asset,
            paid,
            received_asset,
            received,
            fee,
        });
        self.emit_balance(i, ps, sink);
        self.emit_balance(i, rs, sink);
    }

    /// Gives back part (or with `done`, all that is left) of an order's hold.
    pub fn release(
        &mut self,
        order: OrderId,
        account: AccountId,
        asset: AssetId,
        amount: Amount,
        done: bool,
        sink: &mut EventSink,
    ) {
        let h = self
            .order_holds
            .get_mut(&order)
            .expect("release for an order without a hold");
        assert!(h.account == account && h.asset == asset);
        h.amount = h.amount.checked_sub(amount).expect("release over hold");
        if done {
            assert!(
                h.amount.is_zero(),
                "order closed with {} still held",
                h.amount
            );
            self.order_holds.remove(&order);
        }
        let i = self.idx(account).expect("release account vanished");
        let s = self.existing_slot(i, asset).expect("held slot vanished");
        if done {
            self.accounts[i].open_orders -= 1;
        }
        if !amount.is_zero() {
            self.unhold(i, s, amount);
            sink.emit(Event::FundsReleased {
                order,
                account,
                asset,
                amount,
            });
            self.emit_balance(i, s, sink);
        }
    }

    /// Fees reach the fee account (opened on first use, owned by the system). Never refused:
    /// the trade that produced them already happened.
    pub fn credit_fee(
        &mut self,
        market: MarketId,
        account: AccountId,
        asset: AssetId,
        amount: Amount,
        sink: &mut EventSink,
    ) {
        let i = match self.idx(account) {
            Ok(i) => i,
            Err(_) => {
                let i = self.insert_account(account, Principal::SYSTEM);
                sink.emit(Event::AccountOpened {
                    account,
                    owner: Principal::SYSTEM,
                });
                i
            }
        };
        // A fee account is a system account: the asset limit does not apply to it.
        let s = match self.existing_slot(i, asset) {
            Some(s) => s,
            None => {
                self.accounts[i].balances.push(Balance {
                    asset,
                    available: Amount::ZERO,
                    held: Amount::ZERO,
                });
                self.accounts[i].balances.len() - 1
            }
        };
        let b = &mut self.accounts[i].balances[s];
        b.available = b
            .available
            .checked_add(amount)
            .expect("fee account overflow");
        self.totals_mut(asset).received += amount.0 as u128;
        sink.emit(Event::FeeCollected {
            market,
            account,
            asset,
            amount,
        });
        self.emit_balance(i, s, sink);
    }

    // ----- invariants ------------------------------------------------------------------

    /// Checks every ledger invariant. Tests call it after every step.
    pub fn validate(&self) -> Result<(), Violation> {
        let v = |s: String| Err(Violation(s));
        // Index matches the vector.
        if self.index.len() != self.accounts.len() {
            return v("account index size differs from accounts".into());
        }
        let mut sums: BTreeMap<AssetId, u128> = BTreeMap::new();
        let mut held: BTreeMap<(AccountId, AssetId), u128> = BTreeMap::new();
        let mut orders: BTreeMap<AccountId, u32> = BTreeMap::new();
        for (n, a) in self.accounts.iter().enumerate() {
            if self.index.get(&a.id) != Some(&(n as u32)) {
                return v(format!("account {} not indexed at {n}", a.id));
            }
            for b in &a.balances {
                *sums.entry(b.asset).or_default() += b.available.0 as u128 + b.held.0 as u128;
                if a.balances.iter().filter(|x| x.asset == b.asset).count() != 1 {
                    return v(format!("account {} has asset {} twice", a.id, b.asset));
                }
            }
        }
        for (asset, sum) in &sums {
            let t = self.totals.get(asset).copied().unwrap_or_default();
            let expected = (t.deposited + t.received)
                .checked_sub(t.withdrawn + t.sent)
                .unwrap_or(u128::MAX);
            if *sum != expected {
                return v(format!(
                    "asset {asset}: balances sum to {sum}, flows say {expected} ({t:?})"
                ));
            }
        }
        for (asset, t) in &self.totals {
            if !sums.contains_key(asset) && t.deposited + t.received != t.withdrawn + t.sent {
                return v(format!("asset {asset}: no balances but flows {t:?}"));
            }
        }
        for (id, p) in &self.pending {
            *held.entry((p.debit, p.asset)).or_default() += p.amount.0 as u128;
            if !self.expiries.contains(&(p.expires_at, *id)) {
                return v(format!("pending {id} has no expiry entry"));
            }
        }
        if self.expiries.len() != self.pending.len() {
            return v("expiry index size differs from pending".into());
        }
        for (id, f) in &self.inflight {
            *held.entry((f.debit, f.asset)).or_default() += f.amount.0 as u128;
            if f.posted > f.amount {
                return v(format!("in-flight {id} posts more than it holds"));
            }
            if self.pending.contains_key(id) {
                return v(format!("transfer {id} is both pending and in flight"));
            }
        }
        for (o, h) in &self.order_holds {
            *held.entry((h.account, h.asset)).or_default() += h.amount.0 as u128;
            *orders.entry(h.account).or_default() += 1;
            if o.0 == 0 {
                return v("order hold with id 0".into());
            }
        }
        for a in &self.accounts {
            for b in &a.balances {
                let expect = held.remove(&(a.id, b.asset)).unwrap_or(0);
                if b.held.0 as u128 != expect {
                    return v(format!(
                        "account {} asset {}: held {} but holds sum to {expect}",
                        a.id, b.asset, b.held
                    ));
                }
            }
            if a.open_orders != orders.get(&a.id).copied().unwrap_or(0) {
                return v(format!("account {} open order count is wrong", a.id));
            }
        }
        // Every hold needs its balance, even a zero one (a fully settled order still
        // settles and releases against that slot).
        if let Some(((a, s), x)) = held.into_iter().next() {
            return v(format!(
                "holds of {x} on account {a} asset {s} with no balance"
            ));
        }
        Ok(())
    }

    // ----- snapshot support ------------------------------------------------------------

    /// Rebuilds a ledger from its parts (snapshot restore). Checks invariants.
    pub fn from_parts(parts: LedgerParts) -> Result<Ledger, Violation> {
        let mut l = Ledger::new();
        for a in parts.accounts {
            if l.index.contains_key(&a.id) {
                return Err(Violation(format!("account {} twice in snapshot", a.id)));
            }
            l.index.insert(a.id, l.accounts.len() as u32);
            l.accounts.push(a);
        }
        l.assets = parts.assets.into_iter().collect();
        let twice = |what: &str, id: &dyn std::fmt::Display| {
            Err(Violation(format!("{what} {id} twice in snapshot")))
        };
        for (asset, t) in parts.totals {
            if l.totals.insert(asset, t).is_some() {
                return twice("totals of asset", &asset);
            }
        }
        for p in parts.pending {
            l.expiries.insert((p.expires_at, p.id));
            let id = p.id;
            if l.pending.insert(id, p).is_some() {
                return twice("pending transfer", &id);
            }
        }
        for f in parts.inflight {
            let id = f.id;
            if l.inflight.insert(id, f).is_some() {
                return twice("in-flight transfer", &id);
            }
        }
        for (o, h) in parts.order_holds {
            if l.order_holds.insert(o, h).is_some() {
                return twice("hold of order", &o);
            }
        }
        l.validate()?;
        Ok(l)
    }

    /// Moves the accounts `moves` picks, with their open pending transfers, in-flight
    /// transfers and order holds (all kept by the debit or ordering account), into a new
    /// ledger with the same catalog, which is returned. What the moved accounts hold
    /// counts as sent by this ledger and received by the new one, so each ledger's flow
    /// totals still account for its balances. Accounts keep their relative order.
    pub fn split_off(&mut self, moves: impl Fn(AccountId) -> bool) -> Ledger {
        let parts = self.to_parts();
        let supply_max = self.supply_max;
        let mut keep = LedgerParts {
            accounts: Vec::new(),
            assets: parts.assets.clone(),
            totals: Vec::new(),
            pending: Vec::new(),
            inflight: Vec::new(),
            order_holds: Vec::new(),
        };
        let mut go = keep.clone();
        let mut moved_value: BTreeMap<AssetId, u128> = BTreeMap::new();
        for a in parts.accounts {
            if moves(a.id) {
                for b in &a.balances {
                    let v = b.available.0 as u128 + b.held.0 as u128;
                    if v > 0 {
                        *moved_value.entry(b.asset).or_default() += v;
                    }
                }
                go.accounts.push(a);
            } else {
                keep.accounts.push(a);
            }
        }
        for p in parts.pending {
            if moves(p.debit) { &mut go } else { &mut keep }
                .pending
                .push(p);
        }
        for f in parts.inflight {
            if moves(f.debit) { &mut go } else { &mut keep }
                .inflight
                .push(f);
        }
        for (o, h) in parts.order_holds {
            if moves(h.account) { &mut go } else { &mut keep }
                .order_holds
                .push((o, h));
        }
        for (asset, mut t) in parts.totals {
            let v = moved_value.remove(&asset).unwrap_or(0);
            t.sent += v;
            keep.totals.push((asset, t));
            if v > 0 {
                let received = AssetTotals {
                    received: v,
                    ..AssetTotals::default()
                };
                go.totals.push((asset, received));
            }
        }
        assert!(moved_value.is_empty(), "a moved balance has no totals");
        let broken = |v: Violation| panic!("ledger split: {v}");
        *self = Ledger::from_parts(keep).unwrap_or_else(broken);
        self.supply_max = supply_max;
        let mut child = Ledger::from_parts(go).unwrap_or_else(broken);
        child.supply_max = supply_max;
        child
    }

    /// Splits the ledger into ordered parts (snapshot). `from_parts(to_parts())` is identity.
    pub fn to_parts(&self) -> LedgerParts {
        LedgerParts {
            accounts: self.accounts.clone(),
            assets: self.assets.iter().copied().collect(),
            totals: self.totals.iter().map(|(k, v)| (*k, *v)).collect(),
            pending: self.pending.values().cloned().collect(),
            inflight: self.inflight.values().cloned().collect(),
            order_holds: self.order_holds_sorted(),
        }
    }
}

/// The ledger as ordered lists, for snapshots.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LedgerParts {
    /// Accounts in opening order.
    pub accounts: Vec<Account>,
    /// Catalog assets, sorted.
    pub assets: Vec<AssetId>,
    /// Totals, sorted by asset.
    pub totals: Vec<(AssetId, AssetTotals)>,
    /// Open pending transfers, sorted by id.
    pub pending: Vec<Pending>,
    /// In-flight transfers, sorted by id.
    pub inflight: Vec<InFlight>,
    /// Order holds, sorted by order id.
    pub order_holds: Vec<(OrderId, OrderHold)>,
}

#[cfg(test)]
mod tests;
