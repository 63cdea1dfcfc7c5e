//! Deliberately broken behaviour, for proving that the chaos checker can
//! fail: each bug breaks one promise the shop makes, and the checker's own
//! tests (in `bulwark-chaos`) run a workload with it and expect a
//! counterexample.
//!
//! The bugs exist only when the `injected-bugs` feature is compiled in
//! (only `bulwark-chaos`'s dev-dependencies select it), and even then stay
//! inert until one is selected at run time: by [`select`] or by the
//! `BULWARK_INJECT_BUG` environment variable
//! (`skip-release`, `double-charge`, `ack-before-write`), read once at the
//! first check. Without the feature [`active`] is a constant `false`.

/// One deliberate bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectedBug {
    /// The saga records a compensation's stock release without releasing:
    /// a cancelled order's stock stays held forever.
    SkipRelease,
    /// The payments service loses the answer of one applied charge in two
    /// (so the saga retries it) and applies a retried charge again instead
    /// of returning the first.
    DoubleCharge,
    /// The orders service answers a new order before writing it and writes
    /// it a moment later, unless its entry actor restarted in between (the
    /// write was queued in the dead actor): an acknowledged order is lost.
    AckBeforeWrite,
}

impl InjectedBug {
    /// The bug's name, as `BULWARK_INJECT_BUG` spells it.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::SkipRelease => "skip-release",
            Self::DoubleCharge => "double-charge",
            Self::AckBeforeWrite => "ack-before-write",
        }
    }

    /// The bug named `name`.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::SkipRelease, Self::DoubleCharge, Self::AckBeforeWrite]
            .into_iter()
            .find(|bug| bug.name() == name)
    }
}

/// The environment variable that selects a bug at run time.
pub const INJECT_BUG_ENV: &str = "BULWARK_INJECT_BUG";

#[cfg(feature = "injected-bugs")]
static SELECTED: std::sync::OnceLock<Option<InjectedBug>> = std::sync::OnceLock::new();

/// Selects `bug` for this process. Returns `false` when a selection was
/// already made (by an earlier call or by the first check), which then
/// stays. Has no effect without the `injected-bugs` feature.
#[must_use]
pub fn select(bug: InjectedBug) -> bool {
    #[cfg(feature = "injected-bugs")]
    {
        SELECTED.set(Some(bug)).is_ok() || *SELECTED.get_or_init(|| None) == Some(bug)
    }
    #[cfg(not(feature = "injected-bugs"))]
    {
        let _ = bug;
        false
    }
}

/// Whether `bug` is selected in this process.
#[must_use]
pub fn active(bug: InjectedBug) -> bool {
    #[cfg(feature = "injected-bugs")]
    {
        *SELECTED.get_or_init(|| {
            std::env::var(INJECT_BUG_ENV)
                .ok()
                .and_then(|name| InjectedBug::from_name(&name))
        }) == Some(bug)
    }
    #[cfg(not(feature = "injected-bugs"))]
    {
        let _ = bug;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for bug in [
            InjectedBug::SkipRelease,
            InjectedBug::DoubleCharge,
            InjectedBug::AckBeforeWrite,
        ] {
            assert_eq!(InjectedBug::from_name(bug.name()), Some(bug));
        }
        assert_eq!(InjectedBug::from_name("none"), None);
    }

    #[cfg(not(feature = "injected-bugs"))]
    #[test]
    fn without_the_feature_no_bug_can_be_selected() {
        assert!(!select(InjectedBug::SkipRelease));
        assert!(!active(InjectedBug::SkipRelease));
    }
}
