//! Trigger rate limits: per receiver and per client address (token buckets), so one noisy
//! sender or one hammered URL cannot take hookd's whole capacity. The defaults sit far above
//! what Alertmanager sends (a few notifications per receiver and minute).

use std::{
    net::IpAddr,
    num::NonZeroU32,
    sync::atomic::{AtomicU64, Ordering},
};

use governor::{clock::Clock, clock::DefaultClock, DefaultKeyedRateLimiter, Quota};

use crate::{config::Limits, domain::ReceiverId};

/// Keys that have refilled are dropped every this many checks, so the maps stay small.
const SWEEP_EVERY: u64 = 1 << 16;

/// How many times the receiver's rate one trigger URL may spend on reading bodies and the
/// store before anything is known of its sender.
const WORK_FACTOR: u32 = 10;

pub struct TriggerLimits {
    per_receiver: Option<(DefaultKeyedRateLimiter<ReceiverId>, u32)>,
    /// Per URL (receiver and token generation), before the body is read: bounds the work a
    /// stale URL or an unsigned flood costs, in a bucket of its own.
    per_url: Option<(DefaultKeyedRateLimiter<(ReceiverId, u32)>, u32)>,
    per_address: Option<(DefaultKeyedRateLimiter<IpAddr>, u32)>,
    clock: DefaultClock,
    checks: AtomicU64,
}

/// Which limit a trigger hit, its rate, and the seconds until it may retry.
#[derive(Debug, PartialEq, Eq)]
pub enum Limited {
    Receiver { per_second: u32, retry_after: u64 },
    Address { per_second: u32, retry_after: u64 },
}

fn limiter<K: std::hash::Hash + Eq + Clone>(per_second: u32) -> Option<(DefaultKeyedRateLimiter<K>, u32)> {
    let rate = NonZeroU32::new(per_second)?;
    let burst = NonZeroU32::new(per_second.saturating_mul(2)).unwrap_or(rate);
    Some((DefaultKeyedRateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)), per_second))
}

impl TriggerLimits {
    pub fn new(limits: &Limits) -> Self {
        Self {
            per_receiver: limiter(limits.triggers_per_receiver_per_second),
            per_url: limiter(limits.triggers_per_receiver_per_second.saturating_mul(WORK_FACTOR)),
            per_address: limiter(limits.triggers_per_address_per_second),
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
        }
    }

    /// Takes one trigger from the address's bucket: before anything is read, so a flood from
    /// one address costs nothing else.
    /// Then from the URL's work bucket (ten times the receiver's rate), still before the body.
    pub fn check_before_reading(&self, address: IpAddr, receiver: ReceiverId, generation: u32) -> Result<(), Limited> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep();
        }
        if let Some((limiter, per_second)) = &self.per_address {
            limiter
                .check_key(&network_of(address))
                .map_err(|n| Limited::Address { per_second: *per_second, retry_after: self.wait(n) })?;
        }
        if let Some((limiter, per_second)) = &self.per_url {
            limiter
                .check_key(&(receiver, generation))
                .map_err(|n| Limited::Receiver { per_second: *per_second, retry_after: self.wait(n) })?;
        }
        Ok(())
    }

    /// Takes one trigger from the receiver's bucket. Called once the URL is known to be
    /// current and the sender proved itself: a stale URL or an unverified sender must not
    /// use up the real sender's triggers (issue 14).
    pub fn check_receiver(&self, receiver: ReceiverId) -> Result<(), Limited> {
        if let Some((limiter, per_second)) = &self.per_receiver {
            limiter
                .check_key(&receiver)
                .map_err(|n| Limited::Receiver { per_second: *per_second, retry_after: self.wait(n) })?;
        }
        Ok(())
    }

    fn wait(&self, not_until: governor::NotUntil<<DefaultClock as Clock>::Instant>) -> u64 {
        not_until.wait_time_from(self.clock.now()).as_secs() + 1
    }

    fn sweep(&self) {
        if let Some((l, _)) = &self.per_receiver {
            l.retain_recent();
        }
        if let Some((l, _)) = &self.per_address {
            l.retain_recent();
        }
        if let Some((l, _)) = &self.per_url {
            l.retain_recent();
        }
    }
}

/// An IPv6 client holds a whole /64: its addresses are one sender, or rotating through them
/// would escape every per-address limit.
pub fn network_of(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::V6(octets.into())
        }
        IpAddr::V6(v6) => IpAddr::V4(v6.to_ipv4_mapped().expect("checked")),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_receiver: u32, per_address: u32) -> Limits {
        Limits {
            triggers_per_receiver_per_second: per_receiver,
            triggers_per_address_per_second: per_address,
            ..Limits::default()
        }
    }

    #[test]
    fn a_burst_of_twice_the_rate_then_refusals_with_a_retry_time() {
        let l = TriggerLimits::new(&limits(5, 0));
        let (r, other) = (ReceiverId::generate(), ReceiverId::generate());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..10 {
            l.check_before_reading(ip, r, 1).unwrap();
            l.check_receiver(r).unwrap();
        }
        assert_eq!(l.check_receiver(r), Err(Limited::Receiver { per_second: 5, retry_after: 1 }));
        l.check_receiver(other).expect("another receiver has its own bucket");
    }

    #[test]
    fn per_address_limits_count_every_receiver_and_zero_turns_limits_off() {
        let l = TriggerLimits::new(&limits(0, 2));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..4 {
            l.check_before_reading(ip, ReceiverId::generate(), 1).unwrap();
        }
        assert!(matches!(
            l.check_before_reading(ip, ReceiverId::generate(), 1),
            Err(Limited::Address { per_second: 2, .. })
        ));
        l.check_before_reading("192.0.2.2".parse().unwrap(), ReceiverId::generate(), 1).expect("another address");
        let off = TriggerLimits::new(&limits(0, 0));
        for _ in 0..10_000 {
            off.check_before_reading(ip, ReceiverId::generate(), 1).unwrap();
            off.check_receiver(ReceiverId::generate()).unwrap();
        }
    }

    #[test]
    fn an_ipv6_slash_64_is_one_address_and_mapped_v4_is_v4() {
        let l = TriggerLimits::new(&limits(0, 1));
        let r = ReceiverId::generate();
        l.check_before_reading("2001:db8::1".parse().unwrap(), r, 1).unwrap();
        l.check_before_reading("2001:db8::2".parse().unwrap(), r, 1).unwrap();
        assert!(l.check_before_reading("2001:db8::ffff:3".parse().unwrap(), r, 1).is_err(), "the same /64");
        l.check_before_reading("2001:db8:0:1::1".parse().unwrap(), r, 1).expect("another /64");
        let mapped: IpAddr = "::ffff:192.0.2.9".parse().unwrap();
        assert_eq!(network_of(mapped), "192.0.2.9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_url_has_a_work_bucket_of_ten_times_the_rate_apart_from_other_generations() {
        let l = TriggerLimits::new(&limits(1, 0));
        let (ip, r): (IpAddr, _) = ("192.0.2.1".parse().unwrap(), ReceiverId::generate());
        for _ in 0..20 {
            l.check_before_reading(ip, r, 1).unwrap();
        }
        assert!(l.check_before_reading(ip, r, 1).is_err(), "bursts of twice ten times the rate");
        l.check_before_reading(ip, r, 2).expect("the regenerated URL has a bucket of its own");
        l.check_receiver(r).expect("and the verified bucket is untouched");
    }
}
