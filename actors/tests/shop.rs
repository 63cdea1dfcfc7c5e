//! The shop's services through the router: the order saga's outcomes,
//! idempotency, events to notifications, and recovery after a restart.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::Path;
use std::time::Duration;

use bulwark_actors::{
    LineItem, NewProduct, NewUser, Notification, NotificationsRequest, NotificationsResponse,
    Order, OrderStatus, Orders, OrdersRequest, OrdersResponse, PageRequest, Payment, PaymentStatus,
    Payments, PaymentsConfig, PaymentsRequest, PaymentsResponse, PlaceOrder, Product, Products,
    ProductsRequest, ProductsResponse, ShopConfig, ShopError, Users, UsersRequest, UsersResponse,
    install,
};
use bulwark_runtime::{CallError, Node, NodeConfig, Router};
use tokio::time::Instant;

/// Generous: the machine running the tests may be loaded.
const DEADLINE: Duration = Duration::from_secs(30);

async fn start(dir: &Path, payments: PaymentsConfig) -> Node {
    let mut config = ShopConfig::new(dir);
    config.payments = payments;
    install(Node::builder(NodeConfig::new("test")), &config)
        .unwrap()
        .start()
        .await
        .unwrap()
}

async fn user(router: &Router, name: &str) -> u64 {
    let new = NewUser {
        username: name.to_owned(),
        email: format!("{name}@example.com"),
    };
    match router
        .call::<Users>(UsersRequest::Create(new))
        .await
        .unwrap()
    {
        UsersResponse::User(u) => u.id,
        other => panic!("unexpected {other:?}"),
    }
}

async fn product(router: &Router, price_cents: u64, quantity: u64) -> Product {
    let new = NewProduct {
        name: "widget".to_owned(),
        price_cents,
        quantity,
    };
    match router
        .call::<Products>(ProductsRequest::Create(new))
        .await
        .unwrap()
    {
        ProductsResponse::Product(p) => p,
        other => panic!("unexpected {other:?}"),
    }
}

async fn stock(router: &Router, id: u64) -> u64 {
    match router
        .call::<Products>(ProductsRequest::Get(id))
        .await
        .unwrap()
    {
        ProductsResponse::Product(p) => p.quantity,
        other => panic!("unexpected {other:?}"),
    }
}

fn place(user_id: u64, product: &Product, quantity: u64, key: Option<&str>) -> OrdersRequest {
    OrdersRequest::Place(PlaceOrder {
        user_id,
        items: vec![LineItem {
            product_id: product.id,
            quantity,
            price_cents: product.price_cents,
        }],
        idempotency_key: key.map(str::to_owned),
    })
}

async fn order(router: &Router, request: OrdersRequest) -> Result<Order, CallError<ShopError>> {
    router.call::<Orders>(request).await.map(|r| match r {
        OrdersResponse::Order(o) => o,
        other => panic!("unexpected {other:?}"),
    })
}

async fn finished(router: &Router, id: u64) -> Order {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let o = order(router, OrdersRequest::Get(id)).await.unwrap();
        if o.status != OrderStatus::Pending {
            return o;
        }
        assert!(Instant::now() < deadline, "order {id} stuck pending");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn payment(router: &Router, order_id: u64) -> Option<Payment> {
    match router
        .call::<Payments>(PaymentsRequest::Get { order_id })
        .await
        .unwrap()
    {
        PaymentsResponse::Payment(p) => Some(p),
        PaymentsResponse::None => None,
        other @ PaymentsResponse::Ledger(_) => panic!("unexpected {other:?}"),
    }
}

async fn notifications(router: &Router, user_id: u64) -> Vec<Notification> {
    let request = NotificationsRequest::ListByUser {
        user_id,
        page: PageRequest::default(),
    };
    match router
        .call::<bulwark_actors::Notifications>(request)
        .await
        .unwrap()
    {
        NotificationsResponse::Page(page) => page.items,
    }
}

/// Polls until the user has notifications of `kind` and returns them.
async fn notified(router: &Router, user_id: u64, kind: &str) -> Vec<Notification> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let found: Vec<_> = notifications(router, user_id)
            .await
            .into_iter()
            .filter(|n| n.kind == kind)
            .collect();
        if !found.is_empty() {
            return found;
        }
        assert!(Instant::now() < deadline, "no {kind} notification");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Installs, once per test process, a global subscriber that records
/// nothing (at INFO and up, like the capturing ones). tracing-core
/// computes a callsite's interest once, from the default subscriber of
/// the thread that reaches it first: a parallel test thread without a
/// subscriber would cache "never" for the `message` span process-wide,
/// and the capturing subscriber below would not see it.
fn subscriber_everywhere() {
    static GLOBAL: std::sync::Once = std::sync::Once::new();
    GLOBAL.call_once(|| {
        use tracing_subscriber::layer::SubscriberExt as _;
        let quiet = tracing_subscriber::registry().with(tracing::level_filters::LevelFilter::INFO);
        let _ = tracing::subscriber::set_global_default(quiet);
    });
}

/// Log output captured in memory.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn every_step_of_a_saga_reaches_its_service_under_the_orders_correlation_id() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::NEW)
        .finish();
    // One thread runs the test and every task: all of them log through this.
    subscriber_everywhere();
    let _default = tracing::subscriber::set_default(subscriber);
    // Re-ask every callsite reached before the subscribers were in place.
    tracing::callsite::rebuild_interest_cache();
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), PaymentsConfig::default()).await;
    let router = node.router();
    let ada = user(router, "ada").await;
    let widget = product(router, 1250, 100).await;
    let placed = order(router, place(ada, &widget, 1, None)).await.unwrap();
    let done = finished(router, placed.id).await;
    assert_eq!(done.status, OrderStatus::Completed, "{done:?}");
    node.shutdown().await;
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let correlation = format!("correlation_id=order-{}", placed.id);
    // The id itself, not a longer one it prefixes (order-1 in order-12).
    let carries = |line: &str| {
        line.match_indices(&correlation).any(|(at, _)| {
            !line[at + correlation.len()..].starts_with(|c: char| c.is_ascii_digit())
        })
    };
    for service in ["users", "products", "payments"] {
        let served = logs
            .lines()
            .any(|line| line.contains(&format!("service=\"{service}\"")) && carries(line));
        assert!(
            served,
            "no {service} message under {correlation} in\n{logs}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_completes_takes_the_stock_charges_once_and_notifies_once() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), PaymentsConfig::default()).await;
    let router = node.router();
    let ada = user(router, "ada").await;
    let widget = product(router, 1250, 100).await;

    let placed = order(router, place(ada, &widget, 2, None)).await.unwrap();
    assert_eq!(placed.status, OrderStatus::Pending);
    assert_eq!(placed.total_cents, 2500);
    let done = finished(router, placed.id).await;
    assert_eq!(done.status, OrderStatus::Completed, "{done:?}");
    assert_eq!(stock(router, widget.id).await, 98);
    let paid = payment(router, placed.id).await.unwrap();
    assert_eq!(
        (paid.status, paid.amount_cents),
        (PaymentStatus::Charged, 2500)
    );

    let completed = notified(router, ada, "order.completed").await;
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0].order_id, Some(placed.id));
    notified(router, ada, "user.created").await;
    // The relay has nothing left to send: a second look finds no duplicate.
    tokio::task::yield_now().await;
    let all = notifications(router, ada).await;
    assert_eq!(all.len(), 2, "{all:?}");

    let mine = router
        .call::<Orders>(OrdersRequest::ListByUser {
            user_id: ada,
            page: PageRequest::default(),
        })
        .await
        .unwrap();
    assert!(matches!(mine, OrdersResponse::Page(p) if p.total == 1 && p.items[0].id == placed.id));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_payment_cancels_the_order_and_releases_the_stock() {
    let dir = tempfile::tempdir().unwrap();
    let payments = PaymentsConfig {
        decline_over_cents: Some(1000),
        ..PaymentsConfig::default()
    };
    let node = start(dir.path(), payments).await;
    let router = node.router();
    let bob = user(router, "bob").await;
    let widget = product(router, 600, 10).await;

    let placed = order(router, place(bob, &widget, 2, None)).await.unwrap();
    let done = finished(router, placed.id).await;
    assert_eq!(done.status, OrderStatus::Cancelled);
    assert!(
        done.reason.as_deref().unwrap().contains("declined"),
        "{done:?}"
    );
    assert_eq!(stock(router, widget.id).await, 10, "stock released");
    assert_eq!(payment(router, placed.id).await, None, "nothing charged");
    let cancelled = notified(router, bob, "order.cancelled").await;
    assert_eq!(cancelled.len(), 1);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_out_of_stock_order_is_cancelled_without_a_charge() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), PaymentsConfig::default()).await;
    let router = node.router();
    let cy = user(router, "cy").await;
    let widget = product(router, 100, 1).await;
    let placed = order(router, place(cy, &widget, 5, None)).await.unwrap();
    let done = finished(router, placed.id).await;
    assert_eq!(done.status, OrderStatus::Cancelled);
    assert!(
        done.reason.as_deref().unwrap().contains("out of stock"),
        "{done:?}"
    );
    assert_eq!(payment(router, placed.id).await, None);
    assert_eq!(stock(router, widget.id).await, 1);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_for_a_missing_user_is_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), PaymentsConfig::default()).await;
    let router = node.router();
    let widget = product(router, 100, 5).await;
    let placed = order(router, place(424_242, &widget, 1, None))
        .await
        .unwrap();
    let done = finished(router, placed.id).await;
    assert_eq!(done.status, OrderStatus::Cancelled);
    assert_eq!(stock(router, widget.id).await, 5);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_idempotency_key_makes_one_order_and_refuses_a_different_body() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), PaymentsConfig::default()).await;
    let router = node.router();
    let dee = user(router, "dee").await;
    let widget = product(router, 100, 50).await;
    let first = order(router, place(dee, &widget, 1, Some("key-1")))
        .await
        .unwrap();
    let again = order(router, place(dee, &widget, 1, Some("key-1")))
        .await
        .unwrap();
    assert_eq!(first.id, again.id);
    let other = order(router, place(dee, &widget, 2, Some("key-1"))).await;
    assert!(
        matches!(
            other,
            Err(CallError::Service {
                error: ShopError::Conflict { .. },
                ..
            })
        ),
        "{other:?}"
    );
    finished(router, first.id).await;
    assert_eq!(
        stock(router, widget.id).await,
        49,
        "only one order took stock"
    );
    let page = router
        .call::<Orders>(OrdersRequest::ListByUser {
            user_id: dee,
            page: PageRequest::default(),
        })
        .await
        .unwrap();
    assert!(matches!(page, OrdersResponse::Page(p) if p.total == 1));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_order_is_refunded_and_its_stock_released() {
    let dir = tempfile::tempdir().unwrap();
    // A slow provider keeps the saga in the charge step long enough to
    // cancel it there.
    let payments = PaymentsConfig {
        latency_ms: 300,
        ..PaymentsConfig::default()
    };
    let node = start(dir.path(), payments).await;
    let router = node.router();
    let eve = user(router, "eve").await;
    let widget = product(router, 100, 10).await;
    let placed = order(router, place(eve, &widget, 3, None)).await.unwrap();
    let cancelled = order(router, OrdersRequest::Cancel(placed.id)).await;
    match cancelled {
        Ok(o) => assert_eq!(o.id, placed.id),
        // The saga may have committed already on a fast machine.
        Err(CallError::Service {
            error: ShopError::Conflict { .. },
            ..
        }) => {}
        Err(other) => panic!("unexpected {other:?}"),
    }
    let done = finished(router, placed.id).await;
    if done.status == OrderStatus::Cancelled {
        assert_eq!(stock(router, widget.id).await, 10);
        let paid = payment(router, placed.id).await;
        assert!(paid.is_none_or(|p| p.status == PaymentStatus::Refunded));
        let again = order(router, OrdersRequest::Cancel(placed.id)).await;
        assert!(matches!(
            again,
            Err(CallError::Service {
                error: ShopError::Conflict { .. },
                ..
            })
        ));
    } else {
        assert_eq!(stock(router, widget.id).await, 7);
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_everything_is_there_and_a_pending_saga_finishes() {
    let dir = tempfile::tempdir().unwrap();
    // Every charge fails transiently: the saga stays pending, retrying.
    let failing = PaymentsConfig {
        failure_rate: 1.0,
        ..PaymentsConfig::default()
    };
    let node = start(dir.path(), failing).await;
    let router = node.router().clone();
    let fay = user(&router, "fay").await;
    let widget = product(&router, 100, 10).await;
    let placed = order(&router, place(fay, &widget, 1, None)).await.unwrap();
    // Wait until the saga is past the reservation.
    let deadline = Instant::now() + DEADLINE;
    while stock(&router, widget.id).await != 9 {
        assert!(Instant::now() < deadline, "stock never reserved");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    node.shutdown().await;
    drop(router);

    let node = start(dir.path(), PaymentsConfig::default()).await;
    let router = node.router();
    assert!(matches!(
        router.call::<Users>(UsersRequest::Get(fay)).await,
        Ok(UsersResponse::User(u)) if u.username == "fay"
    ));
    let done = finished(router, placed.id).await;
    assert_eq!(done.status, OrderStatus::Completed, "{done:?}");
    assert_eq!(stock(router, widget.id).await, 9);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_written_while_no_subscriber_runs_are_delivered_later_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    // A node with users only: user.created has no subscriber yet.
    let store = bulwark_storage::Store::open(
        dir.path().join("users"),
        bulwark_storage::StoreConfig::default(),
    )
    .unwrap();
    let node = Node::builder(NodeConfig::new("test"))
        .service(Users::new(store).unwrap(), Default::default())
        .start()
        .await
        .unwrap();
    let gus = user(node.router(), "gus").await;
    node.shutdown().await;

    // The whole shop on the same data: the event left in the outbox reaches
    // notifications, once.
    let node = start(dir.path(), PaymentsConfig::default()).await;
    let found = notified(node.router(), gus, "user.created").await;
    assert_eq!(found.len(), 1);
    node.shutdown().await;
}
