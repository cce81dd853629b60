//! A seeded, object-centric e-commerce workload for the demo, tests and benchmarks.
//!
//! Customers place orders of items of products during shop hours; orders are paid (some after a
//! reminder), their items are picked by warehouse employees, packed into shipments, sent the
//! next working morning and delivered days later. Each event references the entities it touches
//! with their roles, so relations (an order's customer, items and products; a shipment's order)
//! carry the prediction. Popular products and returning customers follow Zipf-like laws.

use std::time::Duration;

use prescient_core::{EntityRef, Event, Timestamp};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Size and seed of a generated workload.
#[derive(Debug, Clone, PartialEq)]
pub struct ShopConfig {
    /// Days of trading.
    pub days: u32,
    /// Orders per trading day, on average.
    pub orders_per_day: u32,
    /// Distinct customers.
    pub customers: u32,
    /// Distinct products.
    pub products: u32,
    /// Warehouse employees.
    pub employees: u32,
    /// Random seed.
    pub seed: u64,
}

impl Default for ShopConfig {
    fn default() -> Self {
        ShopConfig {
            days: 28,
            orders_per_day: 120,
            customers: 600,
            products: 80,
            employees: 12,
            seed: 7,
        }
    }
}

const DAY: i64 = 86_400;
/// 2024-01-01T00:00:00Z, a Monday.
const START: i64 = 1_704_067_200;

fn zipf(rng: &mut SmallRng, n: u32, s: f64) -> u32 {
    // Inverse-CDF sampling of a bounded power law: cheap and good enough for a demo.
    let u: f64 = rng.random_range(0.0..1.0);
    let x = ((n as f64).powf(1.0 - s) * u + (1.0 - u)).powf(1.0 / (1.0 - s));
    (x.floor() as u32).clamp(1, n) - 1
}

fn exp(rng: &mut SmallRng, mean_s: f64) -> i64 {
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    (-u.ln() * mean_s) as i64
}

/// Moves `t` (Unix seconds) into shop hours (Mon–Sat, 08:00–20:00 UTC).
fn working(t: i64) -> i64 {
    let mut t = t;
    for _ in 0..8 {
        let day = t.div_euclid(DAY);
        let sec = t.rem_euclid(DAY);
        let weekday = (day + 3).rem_euclid(7); // 1970-01-01 was a Thursday; 0 = Monday
        if weekday == 6 {
            t = (day + 1) * DAY + 8 * 3600;
        } else if sec < 8 * 3600 {
            t = day * DAY + 8 * 3600;
        } else if sec >= 20 * 3600 {
            t = (day + 1) * DAY + 8 * 3600;
        } else {
            return t;
        }
    }
    t
}

fn ev(id: String, ty: &str, t: i64, refs: Vec<EntityRef>) -> Event {
    let mut e = Event::new(id, ty, Timestamp::from_secs(t));
    e.entities = refs;
    e
}

fn r(kind: &str, id: &str, role: &str) -> EntityRef {
    EntityRef::new(kind, id).with_role(role)
}

/// Generates the workload's events, sorted by time.
pub fn generate_shop(cfg: &ShopConfig) -> Vec<Event> {
    let mut rng = SmallRng::seed_from_u64(cfg.seed);
    let mut events = Vec::new();
    let mut item_no = 0u64;
    let mut ship_no = 0u64;
    let orders = u64::from(cfg.days) * u64::from(cfg.orders_per_day);
    let span = i64::from(cfg.days) * DAY;
    for o in 0..orders {
        let order = format!("o-{o}");
        let cust = format!("c-{}", zipf(&mut rng, cfg.customers.max(1), 1.2));
        let placed = working(START + rng.random_range(0..span.max(1)));
        let n_items = 1 + zipf(&mut rng, 4, 1.5);
        let mut items = Vec::new();
        for _ in 0..n_items {
            item_no += 1;
            items.push((
                format!("i-{item_no}"),
                format!("p-{}", zipf(&mut rng, cfg.products.max(1), 1.1)),
            ));
        }
        let mut refs = vec![
            r("orders", &order, "order"),
            r("customers", &cust, "customer"),
        ];
        for (i, p) in &items {
            refs.push(r("items", i, "item"));
            refs.push(r("products", p, "product"));
        }
        events.push(ev(format!("place-{order}"), "place order", placed, refs));
        // Payment: most within hours, some need a reminder a day later.
        let mut paid = placed + 60 + exp(&mut rng, 3.0 * 3600.0);
        if rng.random_bool(0.15) {
            let remind = placed + DAY;
            events.push(ev(
                format!("remind-{order}"),
                "payment reminder",
                remind,
                vec![
                    r("orders", &order, "order"),
                    r("customers", &cust, "customer"),
                ],
            ));
            paid = remind + 600 + exp(&mut rng, 6.0 * 3600.0);
        }
        let payment = format!("pay-{o}");
        events.push(ev(
            format!("pay-{order}"),
            "pay order",
            paid,
            vec![
                r("orders", &order, "order"),
                r("customers", &cust, "customer"),
                r("payments", &payment, "payment"),
            ],
        ));
        // Picking by an employee, in shop hours.
        let emp = format!("e-{}", rng.random_range(0..cfg.employees.max(1)));
        let mut picked = working(paid + 1800 + exp(&mut rng, 2.0 * 3600.0));
        for (i, p) in &items {
            picked = working(picked + 60 + exp(&mut rng, 600.0));
            events.push(ev(
                format!("pick-{i}"),
                "pick item",
                picked,
                vec![
                    r("items", i, "item"),
                    r("products", p, "product"),
                    r("orders", &order, "order"),
                    r("employees", &emp, "picker"),
                ],
            ));
        }
        ship_no += 1;
        let ship = format!("s-{ship_no}");
        let packed = working(picked + 300 + exp(&mut rng, 3600.0));
        let mut refs = vec![
            r("shipments", &ship, "shipment"),
            r("orders", &order, "order"),
            r("employees", &emp, "packer"),
        ];
        for (i, _) in &items {
            refs.push(r("items", i, "item"));
        }
        events.push(ev(format!("pack-{ship}"), "create package", packed, refs));
        let sent = working(((packed / DAY) + 1) * DAY + 8 * 3600 + exp(&mut rng, 2.0 * 3600.0));
        events.push(ev(
            format!("send-{ship}"),
            "send package",
            sent,
            vec![
                r("shipments", &ship, "shipment"),
                r("orders", &order, "order"),
            ],
        ));
        let delivered = working(sent + DAY + exp(&mut rng, DAY as f64));
        events.push(ev(
            format!("deliver-{ship}"),
            "package delivered",
            delivered,
            vec![
                r("shipments", &ship, "shipment"),
                r("orders", &order, "order"),
                r("customers", &cust, "customer"),
            ],
        ));
    }
    events.sort_by_key(|e| e.time);
    events
}

/// The time span of a generated workload.
pub fn span(events: &[Event]) -> Duration {
    match (events.first(), events.last()) {
        (Some(a), Some(b)) => b.time.since(a.time),
        _ => Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_deterministic_sorted_and_related() {
        let cfg = ShopConfig {
            days: 3,
            orders_per_day: 20,
            ..ShopConfig::default()
        };
        let a = generate_shop(&cfg);
        let b = generate_shop(&cfg);
        assert_eq!(a, b);
        assert!(a.windows(2).all(|w| w[0].time <= w[1].time));
        // Every order is placed, paid, packed, sent and delivered.
        for ty in [
            "place order",
            "pay order",
            "create package",
            "send package",
            "package delivered",
        ] {
            assert_eq!(a.iter().filter(|e| e.event_type == ty).count(), 60, "{ty}");
        }
        // Shop hours: picks happen 08:00–20:00, Monday to Saturday.
        for e in a.iter().filter(|e| e.event_type == "pick item") {
            let s = e.time.as_micros() / 1_000_000;
            assert!(
                (8 * 3600..20 * 3600).contains(&s.rem_euclid(DAY)),
                "{}",
                e.time
            );
        }
        let kinds: std::collections::BTreeSet<&str> = a
            .iter()
            .flat_map(|e| e.entities.iter().map(|r| r.kind.as_str()))
            .collect();
        assert_eq!(
            kinds.into_iter().collect::<Vec<_>>(),
            [
                "customers",
                "employees",
                "items",
                "orders",
                "payments",
                "products",
                "shipments"
            ]
        );
    }
}
