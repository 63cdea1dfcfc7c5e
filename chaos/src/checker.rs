//! After the run: read what the shop holds through its read-only
//! endpoints ([`collect`]) and check the history against it ([`check`]).
//!
//! [`check`] is a pure function of the history and the observed state, so
//! each invariant can be tested on made-up data.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::client::Api;
use crate::history::{Line, Op, OpKind, Outcome};

/// Most counterexamples kept per invariant (the count is still exact).
pub const COUNTEREXAMPLES_MAX: usize = 20;
/// Items per page when the checker lists.
const PAGE_SIZE: u32 = 100;

/// One invariant's verdict.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// Its number in the list (1..=7).
    pub number: u8,
    /// What it says.
    pub name: &'static str,
    /// How many cases were checked.
    pub checked: usize,
    /// How many cases broke it.
    pub violations: usize,
    /// The first [`COUNTEREXAMPLES_MAX`] of them, described.
    pub counterexamples: Vec<String>,
}

impl Verdict {
    fn new(number: u8, name: &'static str) -> Self {
        Self {
            number,
            name,
            checked: 0,
            violations: 0,
            counterexamples: Vec::new(),
        }
    }

    /// Whether nothing broke it.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.violations == 0
    }

    fn case(&mut self, ok: bool, counterexample: impl FnOnce() -> String) {
        self.checked += 1;
        if !ok {
            self.violation(counterexample());
        }
    }

    fn violation(&mut self, text: String) {
        self.violations += 1;
        if self.counterexamples.len() < COUNTEREXAMPLES_MAX {
            self.counterexamples.push(text);
        }
    }
}

/// One order as the shop holds it.
#[derive(Debug, Clone, Default)]
pub struct ObservedOrder {
    /// `GET /api/v1/orders/{id}`.
    pub order: Value,
    /// `GET /api/v1/orders/{id}/events`: the `events` array.
    pub events: Vec<Value>,
    /// `GET /api/v1/payments/ledger?order_id=`: the `movements` array.
    pub movements: Vec<Value>,
}

/// What the shop holds once quiet, as its API shows it.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Users that exist, by id (`GET /api/v1/users/{id}`), among those the
    /// history created.
    pub users: BTreeMap<u64, Value>,
    /// Each ordering user's orders, by user (`GET /api/v1/orders?user_id=`).
    pub orders_by_user: BTreeMap<u64, Vec<u64>>,
    /// Every order found, by id.
    pub orders: BTreeMap<u64, ObservedOrder>,
    /// Each user's notifications (`GET /api/v1/notifications?user_id=`).
    pub notifications: BTreeMap<u64, Vec<Value>>,
    /// Products the history created, by id (`GET /api/v1/products/{id}`).
    pub products: BTreeMap<u64, Value>,
    /// Pending events per outbox (`GET /admin/outboxes`).
    pub outboxes: Vec<(String, u64)>,
}

/// Ids the history knows about.
struct Known {
    users: BTreeSet<u64>,
    /// Users that tried to order.
    ordering_users: BTreeSet<u64>,
    /// Initial stock of every product created ok: (quantity, price).
    products: BTreeMap<u64, u64>,
    /// Orders acknowledged by a 2xx.
    orders: BTreeSet<u64>,
}

fn known(ops: &[Op]) -> Known {
    let mut known = Known {
        users: BTreeSet::new(),
        ordering_users: BTreeSet::new(),
        products: BTreeMap::new(),
        orders: BTreeSet::new(),
    };
    for op in ops {
        match &op.kind {
            OpKind::CreateUser { .. } => {
                if let Some(id) = op.id() {
                    known.users.insert(id);
                }
            }
            OpKind::CreateProduct { quantity, .. } => {
                if let Some(id) = op.id() {
                    known.products.insert(id, *quantity);
                }
            }
            OpKind::PlaceOrder { user_id, .. } => {
                known.ordering_users.insert(*user_id);
                if let Some(id) = op.id() {
                    known.orders.insert(id);
                }
            }
            OpKind::CancelOrder { .. } | OpKind::ReadOrder { .. } => {}
        }
    }
    known
}

/// Reads, retrying a failed read until `deadline` (a node may still be
/// restarting when the checker starts).
async fn read_retrying(api: &Api, path: &str, deadline: Instant) -> Result<Option<Value>, String> {
    let mut edge = 0;
    loop {
        match api.read(edge, path).await {
            Ok(found) => return Ok(found),
            Err(err) if Instant::now() > deadline => return Err(err),
            Err(_) => {
                edge += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Every page of a list.
async fn list_all(api: &Api, path: &str, deadline: Instant) -> Result<Vec<Value>, String> {
    let mut items = Vec::new();
    let mut page = 1;
    loop {
        let separator = if path.contains('?') { '&' } else { '?' };
        let url = format!("{path}{separator}page={page}&page_size={PAGE_SIZE}");
        let body = read_retrying(api, &url, deadline)
            .await?
            .ok_or_else(|| format!("GET {url}: 404"))?;
        let batch = body["items"].as_array().cloned().unwrap_or_default();
        let total = body["total"].as_u64().unwrap_or(0);
        let done = batch.is_empty();
        items.extend(batch);
        if done || items.len() as u64 >= total {
            return Ok(items);
        }
        page += 1;
    }
}

/// Reads everything the checker needs.
///
/// # Errors
/// The first read that kept failing until `deadline`.
pub(crate) async fn collect(api: &Api, ops: &[Op], deadline: Instant) -> Result<Observed, String> {
    let known = known(ops);
    let mut observed = Observed::default();
    for &id in &known.users {
        if let Some(user) = read_retrying(api, &format!("/api/v1/users/{id}"), deadline).await? {
            observed.users.insert(id, user);
        }
        let notifications = list_all(
            api,
            &format!("/api/v1/notifications?user_id={id}"),
            deadline,
        )
        .await?;
        observed.notifications.insert(id, notifications);
    }
    for &user in &known.ordering_users {
        let orders = list_all(api, &format!("/api/v1/orders?user_id={user}"), deadline).await?;
        let ids: Vec<u64> = orders.iter().filter_map(|o| o["id"].as_u64()).collect();
        observed.orders_by_user.insert(user, ids);
    }
    let mut order_ids: BTreeSet<u64> = known.orders.clone();
    order_ids.extend(observed.orders_by_user.values().flatten().copied());
    for id in order_ids {
        let Some(order) = read_retrying(api, &format!("/api/v1/orders/{id}"), deadline).await?
        else {
            continue;
        };
        let events = read_retrying(api, &format!("/api/v1/orders/{id}/events"), deadline)
            .await?
            .map(|body| body["events"].as_array().cloned().unwrap_or_default())
            .unwrap_or_default();
        let movements = read_retrying(
            api,
            &format!("/api/v1/payments/ledger?order_id={id}"),
            deadline,
        )
        .await?
        .map(|body| body["movements"].as_array().cloned().unwrap_or_default())
        .unwrap_or_default();
        observed.orders.insert(
            id,
            ObservedOrder {
                order,
                events,
                movements,
            },
        );
    }
    for &id in known.products.keys() {
        if let Some(product) =
            read_retrying(api, &format!("/api/v1/products/{id}"), deadline).await?
        {
            observed.products.insert(id, product);
        }
    }
    observed.outboxes = outboxes(api, deadline).await?;
    Ok(observed)
}

/// Pending events per outbox.
pub(crate) async fn outboxes(api: &Api, deadline: Instant) -> Result<Vec<(String, u64)>, String> {
    let mut edge = 0;
    loop {
        match api.admin_read(edge, "/admin/outboxes").await {
            Ok(body) => {
                return Ok(body["outboxes"]
                    .as_array()
                    .map(|all| {
                        all.iter()
                            .map(|o| {
                                (
                                    o["service"].as_str().unwrap_or("?").to_owned(),
                                    o["pending"].as_u64().unwrap_or(u64::MAX),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default());
            }
            Err(err) if Instant::now() > deadline => return Err(err),
            Err(_) => {
                edge += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

fn cents(value: &Value) -> u64 {
    // Prices are JSON numbers with at most two decimals.
    value
        .as_f64()
        .map_or(0, |f| (f * 100.0).round().max(0.0) as u64)
}

fn status(order: &Value) -> &str {
    order["status"].as_str().unwrap_or("?")
}

fn lines(order: &Value) -> Vec<Line> {
    order["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| Line {
                    product_id: item["product_id"].as_u64().unwrap_or(0),
                    quantity: item["quantity"].as_u64().unwrap_or(0),
                    price_cents: cents(&item["price"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Checks the seven invariants.
#[must_use]
pub fn check(ops: &[Op], observed: &Observed) -> Vec<Verdict> {
    let known = known(ops);
    vec![
        creates_exist_and_apply_once(ops, &known, observed),
        orders_finish(observed),
        stock_is_conserved(&known, observed),
        money_moves_once(observed),
        keys_make_one_order(ops, observed),
        one_notification_per_event(&known, observed),
        statuses_never_go_back(ops, observed),
    ]
}

fn creates_exist_and_apply_once(ops: &[Op], known: &Known, observed: &Observed) -> Verdict {
    let mut v = Verdict::new(
        1,
        "every ok create exists; no operation took effect twice (or after a fail)",
    );
    for &id in &known.users {
        v.case(observed.users.contains_key(&id), || {
            format!("user {id} was created (2xx) but is not found")
        });
    }
    for &id in known.products.keys() {
        v.case(observed.products.contains_key(&id), || {
            format!("product {id} was created (2xx) but is not found")
        });
    }
    // Each user places one logical order: group its attempts.
    let mut attempts: BTreeMap<u64, Vec<&Op>> = BTreeMap::new();
    for op in ops {
        if let OpKind::PlaceOrder { user_id, .. } = &op.kind {
            attempts.entry(*user_id).or_default().push(op);
        }
    }
    for (user, tries) in attempts {
        let found = observed
            .orders_by_user
            .get(&user)
            .cloned()
            .unwrap_or_default();
        let acked: BTreeSet<u64> = tries.iter().filter_map(|op| op.id()).collect();
        let summary = || {
            tries
                .iter()
                .map(|op| {
                    format!(
                        "{}@{}ms{}",
                        op.outcome.as_str(),
                        op.complete_ms,
                        op.id().map(|id| format!("→{id}")).unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        for id in &acked {
            v.case(found.contains(id), || {
                format!(
                    "order {id} of user {user} was acknowledged (2xx) but is not found \
                     (attempts: {}; found: {found:?})",
                    summary()
                )
            });
        }
        v.case(found.len() <= 1, || {
            format!(
                "user {user}'s one order took effect {} times: orders {found:?} (attempts: {})",
                found.len(),
                summary()
            )
        });
        let all_failed = tries.iter().all(|op| op.outcome == Outcome::Fail);
        v.case(!all_failed || found.is_empty(), || {
            format!(
                "user {user}'s order failed definitely yet made orders {found:?} (attempts: {})",
                summary()
            )
        });
    }
    v
}

fn orders_finish(observed: &Observed) -> Verdict {
    let mut v = Verdict::new(2, "every order is completed or cancelled; none stuck");
    for (id, order) in &observed.orders {
        let status = status(&order.order);
        v.case(status == "completed" || status == "cancelled", || {
            let last = order
                .events
                .last()
                .and_then(|e| e["event"].as_str())
                .unwrap_or("?");
            format!("order {id} is {status} (last event: {last})")
        });
    }
    v
}

fn stock_is_conserved(known: &Known, observed: &Observed) -> Verdict {
    let mut v = Verdict::new(
        3,
        "per product: stock never negative, initial = current + committed by completed orders",
    );
    let mut committed: BTreeMap<u64, u64> = BTreeMap::new();
    let mut cancelled_reserving: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for (id, order) in &observed.orders {
        let status = status(&order.order);
        for line in lines(&order.order) {
            if status == "completed" {
                *committed.entry(line.product_id).or_default() += line.quantity;
            } else if order.events.iter().any(|e| e["event"] == "stock_reserved") {
                cancelled_reserving
                    .entry(line.product_id)
                    .or_default()
                    .push(*id);
            }
        }
    }
    for (&id, &initial) in &known.products {
        let Some(product) = observed.products.get(&id) else {
            continue;
        };
        let current = product["quantity"].as_u64();
        let done = committed.get(&id).copied().unwrap_or(0);
        v.case(
            current.is_some_and(|c| c <= initial && c + done == initial),
            || {
                let suspects = cancelled_reserving.get(&id).cloned().unwrap_or_default();
                format!(
                    "product {id}: initial {initial} ≠ current {} + committed {done}; \
                     cancelled orders that had reserved it: {:?}",
                    product["quantity"],
                    &suspects[..suspects.len().min(10)]
                )
            },
        );
    }
    v
}

fn money_moves_once(observed: &Observed) -> Verdict {
    let mut v = Verdict::new(
        4,
        "per order: charged − refunded ∈ {0, amount}; completed ⇒ charged once; \
         cancelled after a charge ⇒ refunded once",
    );
    for (id, order) in &observed.orders {
        let amount = cents(&order.order["total"]);
        let charges: Vec<u64> = order
            .movements
            .iter()
            .filter(|m| m["kind"] == "charge")
            .map(|m| cents(&m["amount"]))
            .collect();
        let refunds: Vec<u64> = order
            .movements
            .iter()
            .filter(|m| m["kind"] == "refund")
            .map(|m| cents(&m["amount"]))
            .collect();
        let charged: u64 = charges.iter().sum();
        let refunded: u64 = refunds.iter().sum();
        let net = i128::from(charged) - i128::from(refunded);
        let status = status(&order.order);
        let ok = (net == 0 || net == i128::from(amount))
            && charges.len() <= 1
            && refunds.len() <= 1
            && match status {
                "completed" => charges == [amount] && refunds.is_empty(),
                "cancelled" => net == 0,
                _ => true,
            };
        v.case(ok, || {
            format!(
                "order {id} ({status}, amount {amount} cents): charges {charges:?}, \
                 refunds {refunds:?}, net {net}"
            )
        });
    }
    v
}

fn keys_make_one_order(ops: &[Op], observed: &Observed) -> Verdict {
    let mut v = Verdict::new(5, "every Idempotency-Key made at most one order");
    let mut by_key: BTreeMap<&str, (u64, BTreeSet<u64>)> = BTreeMap::new();
    for op in ops {
        if let OpKind::PlaceOrder {
            user_id,
            key: Some(key),
            ..
        } = &op.kind
        {
            let entry = by_key
                .entry(key.as_str())
                .or_insert((*user_id, BTreeSet::new()));
            if let Some(id) = op.id() {
                entry.1.insert(id);
            }
        }
    }
    for (key, (user, answered)) in by_key {
        let found = observed
            .orders_by_user
            .get(&user)
            .cloned()
            .unwrap_or_default();
        v.case(answered.len() <= 1 && found.len() <= 1, || {
            format!(
                "key {key} (user {user}): answers named orders {answered:?}, \
                 the user has orders {found:?}"
            )
        });
    }
    v
}

fn one_notification_per_event(known: &Known, observed: &Observed) -> Verdict {
    let mut v = Verdict::new(6, "exactly one notification per event; outboxes drained");
    for (&user, notifications) in &observed.notifications {
        if !known.users.contains(&user) {
            continue;
        }
        let welcomes = notifications
            .iter()
            .filter(|n| n["kind"] == "user.created")
            .count();
        v.case(welcomes == 1, || {
            format!("user {user} has {welcomes} user.created notifications")
        });
        let mut event_ids = BTreeSet::new();
        for n in notifications {
            let event = n["event_id"].as_str().unwrap_or("?").to_owned();
            v.case(event_ids.insert(event.clone()), || {
                format!("event {event} made more than one notification for user {user}")
            });
        }
        for order_id in observed.orders_by_user.get(&user).into_iter().flatten() {
            let Some(order) = observed.orders.get(order_id) else {
                continue;
            };
            let status = status(&order.order);
            let about: Vec<&str> = notifications
                .iter()
                .filter(|n| n["order_id"].as_u64() == Some(*order_id))
                .filter_map(|n| n["kind"].as_str())
                .collect();
            let expected = format!("order.{status}");
            v.case(about == [expected.as_str()], || {
                format!("order {order_id} is {status}; its notifications: {about:?}")
            });
        }
    }
    for (service, pending) in &observed.outboxes {
        v.case(*pending == 0, || {
            format!("the {service} outbox still holds {pending} events")
        });
    }
    v
}

fn statuses_never_go_back(ops: &[Op], observed: &Observed) -> Verdict {
    let mut v = Verdict::new(
        7,
        "no order's status ever went backwards (event log, reads)",
    );
    for (id, order) in &observed.orders {
        let statuses: Vec<&str> = order
            .events
            .iter()
            .map(|e| e["status"].as_str().unwrap_or("?"))
            .collect();
        let terminal = statuses.iter().position(|s| *s != "pending");
        let monotone = terminal.is_none_or(|at| statuses[at..].iter().all(|s| *s == statuses[at]));
        let terminal_events = order
            .events
            .iter()
            .filter(|e| e["event"] == "completed" || e["event"] == "cancelled")
            .count();
        let last = statuses.last().copied().unwrap_or("?");
        v.case(
            monotone && terminal_events <= 1 && last == status(&order.order),
            || {
                let names: Vec<&str> = order
                    .events
                    .iter()
                    .map(|e| e["event"].as_str().unwrap_or("?"))
                    .collect();
                format!(
                    "order {id} ({}): events {names:?} with statuses {statuses:?}",
                    status(&order.order)
                )
            },
        );
    }
    // What clients saw: once an order was seen finished, no later read
    // (invoked after that one completed) may see it otherwise.
    let mut seen_final: BTreeMap<u64, (&str, u64)> = BTreeMap::new();
    let mut reads: Vec<&Op> = ops
        .iter()
        .filter(|op| {
            op.outcome == Outcome::Ok
                && matches!(
                    op.kind,
                    OpKind::ReadOrder { .. } | OpKind::CancelOrder { .. }
                )
        })
        .collect();
    reads.sort_by_key(|op| op.invoke_ms);
    for op in reads {
        let (OpKind::ReadOrder { order_id } | OpKind::CancelOrder { order_id }) = op.kind else {
            continue;
        };
        let seen = status(&op.body);
        if let Some(&(earlier, completed_ms)) = seen_final.get(&order_id)
            && completed_ms < op.invoke_ms
        {
            v.case(seen == earlier, || {
                format!(
                    "order {order_id} was read {earlier} (done by {completed_ms}ms), \
                     then {seen} (read at {}ms)",
                    op.invoke_ms
                )
            });
        } else {
            v.checked += 1;
        }
        if seen != "pending" {
            seen_final.entry(order_id).or_insert((
                match seen {
                    "completed" => "completed",
                    "cancelled" => "cancelled",
                    _ => "?",
                },
                op.complete_ms,
            ));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn op(kind: OpKind, outcome: Outcome, body: Value) -> Op {
        Op {
            client: 0,
            kind,
            invoke_ms: 0,
            complete_ms: 1,
            outcome,
            status: None,
            body,
        }
    }

    fn place(user_id: u64, outcome: Outcome, id: Option<u64>) -> Op {
        op(
            OpKind::PlaceOrder {
                user_id,
                lines: Vec::new(),
                key: Some(format!("k{user_id}")),
                attempt: 1,
            },
            outcome,
            id.map_or(Value::Null, |id| json!({"id": id})),
        )
    }

    fn verdict(verdicts: &[Verdict], number: u8) -> &Verdict {
        &verdicts[usize::from(number) - 1]
    }

    #[test]
    fn an_info_order_applied_twice_breaks_invariants_one_and_five() {
        let ops = vec![
            place(7, Outcome::Info, None),
            place(7, Outcome::Ok, Some(41)),
        ];
        let mut observed = Observed::default();
        observed.orders_by_user.insert(7, vec![40, 41]);
        let verdicts = check(&ops, &observed);
        assert!(!verdict(&verdicts, 1).passed());
        assert!(verdict(&verdicts, 1).counterexamples[0].contains("took effect 2 times"));
        assert!(!verdict(&verdicts, 5).passed());
    }

    #[test]
    fn a_lost_acknowledged_order_breaks_invariant_one() {
        let ops = vec![place(3, Outcome::Ok, Some(9))];
        let observed = Observed::default();
        let verdicts = check(&ops, &observed);
        assert!(verdict(&verdicts, 1).counterexamples[0].contains("order 9"));
    }

    #[test]
    fn a_completed_order_refunded_or_charged_twice_breaks_invariant_four() {
        let mut observed = Observed::default();
        let charge = json!({"kind": "charge", "amount": 2.5});
        observed.orders.insert(
            1,
            ObservedOrder {
                order: json!({"status": "completed", "total": 2.5}),
                events: Vec::new(),
                movements: vec![charge.clone(), charge.clone()],
            },
        );
        observed.orders.insert(
            2,
            ObservedOrder {
                order: json!({"status": "completed", "total": 2.5}),
                events: Vec::new(),
                movements: vec![charge],
            },
        );
        let verdicts = check(&[], &observed);
        let money = verdict(&verdicts, 4);
        assert_eq!((money.checked, money.violations), (2, 1));
        assert!(money.counterexamples[0].contains("order 1"));
    }

    #[test]
    fn a_status_that_goes_back_breaks_invariant_seven() {
        let mut observed = Observed::default();
        observed.orders.insert(
            5,
            ObservedOrder {
                order: json!({"status": "pending"}),
                events: vec![
                    json!({"event": "placed", "status": "pending"}),
                    json!({"event": "cancelled", "status": "cancelled"}),
                    json!({"event": "placed", "status": "pending"}),
                ],
                movements: Vec::new(),
            },
        );
        let verdicts = check(&[], &observed);
        assert!(!verdict(&verdicts, 7).passed());
        assert!(!verdict(&verdicts, 2).passed());
    }
}
