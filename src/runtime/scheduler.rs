//! Fair CPU between tenants on the guest executor. A guest runs only while it holds one of a fixed
//! number of run permits (one per executor thread); it gives its permit back at the end of each
//! time slice when a call that deserves it more is waiting (the epoch tick is the slice; a guest
//! yields to the executor at every tick, so its deadline and an abort are seen there), whenever it
//! waits (in a host call, say), and when it ends. A free permit goes to the waiting call whose
//! tenant has the least virtual runtime (CPU time used, divided by the tenant's weight: 1 for every
//! tenant until a spec field sets it), and within a tenant to the call that has used the least CPU,
//! so a tenant's share does not grow with the number of calls it has in flight and short calls pass
//! long ones. A tenant alone gets every permit (nothing is kept idle for others). A tenant that
//! (re)starts running starts at the least virtual runtime of those running, as in Linux's CFS, so
//! it neither starves the others with credit saved while idle nor waits behind their past. A call
//! that arrives while every permit is held, or begins to wait while another tenant that used as
//! much or more holds one, does not wait for the next tick: the scheduler interrupts the running
//! guests at once (it advances the engine's epoch), so a short call passes a long one of another
//! tenant within microseconds.
//!
//! [`Fair`] is the decision alone, with CPU time given to it (no clock, no locks, no wakers of
//! its own), so that it is tested on its own; [`Scheduler`] shares it between the calls, and
//! [`Scheduled`] runs one call's future under it, measuring the CPU time the call takes on the
//! thread that runs it. The scheduler never ends a call: deadlines and budgets are `call`'s.

use super::cpu::CpuAccount;
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

/// A call known to the scheduler.
pub(super) type CallId = u64;

/// What a call that asks for a run permit gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Asked {
    /// It holds a permit.
    Granted,
    /// It waits for one.
    Waits,
    /// It began to wait while another tenant that has used as much CPU or more holds a permit:
    /// the running guests should be interrupted now rather than at the end of their slice.
    Preempts,
}

impl Asked {
    pub(super) fn granted(self) -> bool {
        self == Asked::Granted
    }
}

/// Which waiting call runs next; see the module docs.
pub(super) struct Fair<W> {
    /// Run permits nobody holds. While any is free, nobody waits.
    free: usize,
    tenants: HashMap<Arc<str>, TenantRun>,
    calls: HashMap<CallId, CallRun<W>>,
    /// Where a tenant that (re)starts running starts: the least virtual runtime among running
    /// tenants when last looked at. Never goes back.
    floor: u64,
    next: CallId,
}

struct TenantRun {
    /// Weighted CPU nanoseconds: CPU time used divided by `share`.
    vruntime: u64,
    share: u64,
    /// The tenant's calls under the scheduler (running, waiting or idle in a host call).
    calls: usize,
    /// The tenant's calls that hold a permit.
    holding: usize,
    /// The tenant's waiting calls by CPU used, then arrival.
    waiting: BTreeSet<(u64, CallId)>,
}

struct CallRun<W> {
    tenant: Arc<str>,
    /// CPU nanoseconds the call has used.
    cpu: u64,
    state: State<W>,
}

enum State<W> {
    /// Neither running nor asking to (it waits for something else, or has not started).
    Idle,
    /// Asking for a permit; `W` is told when it gets one.
    Waiting(W),
    /// Holds a permit.
    Holding,
}

impl<W> Fair<W> {
    pub(super) fn new(permits: usize) -> Self {
        Self { free: permits.max(1), tenants: HashMap::new(), calls: HashMap::new(), floor: 0, next: 0 }
    }

    /// Registers a new call of `tenant`, whose weight is `share` (at least 1).
    pub(super) fn join(&mut self, tenant: &Arc<str>, share: u32) -> CallId {
        if !self.tenants.contains_key(tenant) {
            self.floor = self.floor.max(self.least_vruntime().unwrap_or(0));
            let run =
                TenantRun { vruntime: self.floor, share: 1, calls: 0, holding: 0, waiting: BTreeSet::new() };
            self.tenants.insert(tenant.clone(), run);
        }
        let run = self.tenants.get_mut(tenant).expect("inserted above");
        run.calls += 1;
        run.share = u64::from(share.max(1));
        let id = self.next;
        self.next += 1;
        self.calls.insert(id, CallRun { tenant: tenant.clone(), cpu: 0, state: State::Idle });
        id
    }

    /// Asks for a permit for `call`: granted when it holds one (now or already); otherwise it
    /// waits, and `waker` is returned by the [`Fair::release`] or [`Fair::leave`] that grants
    /// it one (a later request replaces the waker).
    pub(super) fn request(&mut self, call: CallId, waker: &W) -> Asked
    where
        W: Clone,
    {
        let Some(run) = self.calls.get_mut(&call) else { return Asked::Waits };
        let tenant = self.tenants.get_mut(&run.tenant).expect("a call's tenant is known");
        match run.state {
            State::Holding => Asked::Granted,
            State::Waiting(ref mut waiting) => {
                waiting.clone_from(waker);
                Asked::Waits
            }
            State::Idle if self.free > 0 => {
                self.free -= 1;
                run.state = State::Holding;
                tenant.holding += 1;
                Asked::Granted
            }
            State::Idle => {
                run.state = State::Waiting(waker.clone());
                tenant.waiting.insert((run.cpu, call));
                let (mine, vruntime) = (&run.tenant, tenant.vruntime);
                // Another tenant runs that has used as much or more: at the end of its slice it
                // would give way (`should_yield` settles the ties), so end the slice now.
                let behind = self
                    .tenants
                    .iter()
                    .any(|(name, other)| other.holding > 0 && other.vruntime >= vruntime && **name != **mine);
                if behind { Asked::Preempts } else { Asked::Waits }
            }
        }
    }

    /// Adds `cpu_ns` nanoseconds of CPU time to `call` and its tenant.
    pub(super) fn charge(&mut self, call: CallId, cpu_ns: u64) {
        let Some(run) = self.calls.get_mut(&call) else { return };
        run.cpu = run.cpu.saturating_add(cpu_ns);
        let tenant = self.tenants.get_mut(&run.tenant).expect("a call's tenant is known");
        tenant.vruntime = tenant.vruntime.saturating_add(cpu_ns / tenant.share);
    }

    /// Whether a waiting call deserves `call`'s permit more than `call` does: it belongs to a
    /// tenant with less virtual runtime, or to the same tenant and used less CPU.
    pub(super) fn should_yield(&self, call: CallId) -> bool {
        let Some(run) = self.calls.get(&call) else { return false };
        let mine = (self.tenants[&run.tenant].vruntime, run.cpu);
        self.next_waiting().is_some_and(|(key, _)| key < mine)
    }

    /// `call` gives its permit back (if it holds one) after using `cpu_ns` more; returns the
    /// waker of the call that gets it.
    pub(super) fn release(&mut self, call: CallId, cpu_ns: u64) -> Option<W> {
        self.charge(call, cpu_ns);
        let run = self.calls.get_mut(&call)?;
        if matches!(run.state, State::Holding) {
            run.state = State::Idle;
            self.free += 1;
            self.tenants.get_mut(&run.tenant).expect("a call's tenant is known").holding -= 1;
        }
        self.grant()
    }

    /// `call` ended (or was dropped) after using `cpu_ns` more; returns the waker of the call
    /// that gets its permit, if it held one.
    pub(super) fn leave(&mut self, call: CallId, cpu_ns: u64) -> Option<W> {
        self.charge(call, cpu_ns);
        let run = self.calls.remove(&call)?;
        let tenant = self.tenants.get_mut(&run.tenant).expect("a call's tenant is known");
        match run.state {
            State::Holding => {
                self.free += 1;
                tenant.holding -= 1;
            }
            State::Waiting(_) => {
                tenant.waiting.remove(&(run.cpu, call));
            }
            State::Idle => {}
        }
        tenant.calls -= 1;
        if tenant.calls == 0 {
            // A tenant that starts again starts at the floor: nothing is lost here.
            self.tenants.remove(&run.tenant);
        }
        self.grant()
    }

    /// Hands a free permit to the call that deserves it most; returns its waker.
    fn grant(&mut self) -> Option<W> {
        if self.free == 0 {
            return None;
        }
        let (_, (tenant, key)) = self.next_waiting()?;
        let tenant = tenant.clone();
        let run = self.tenants.get_mut(&tenant).expect("a waiting call's tenant is known");
        run.waiting.remove(&key);
        run.holding += 1;
        let run = self.calls.get_mut(&key.1).expect("a waiting call is known");
        let State::Waiting(waker) = std::mem::replace(&mut run.state, State::Holding) else {
            unreachable!("a call in a waiting set is waiting")
        };
        self.free -= 1;
        Some(waker)
    }

    /// The waiting call that deserves a permit most: its key (tenant's virtual runtime, call's
    /// CPU), its tenant and its place in the tenant's waiting set.
    #[allow(clippy::type_complexity)]
    fn next_waiting(&self) -> Option<((u64, u64), (&Arc<str>, (u64, CallId)))> {
        self.tenants
            .iter()
            .filter_map(|(name, run)| {
                run.waiting.first().map(|&first| ((run.vruntime, first.0), (name, first)))
            })
            .min_by_key(|(key, (_, first))| (*key, first.1))
    }

    /// The least virtual runtime of the tenants with calls.
    fn least_vruntime(&self) -> Option<u64> {
        self.tenants.values().map(|run| run.vruntime).min()
    }
}

/// [`Fair`] shared by the calls of a runtime.
pub(super) struct Scheduler {
    fair: Mutex<Fair<Waker>>,
    /// Interrupts every running guest at its next instruction boundary check (advances the
    /// engine's epoch), as the tick does.
    interrupt: Box<dyn Fn() + Send + Sync>,
}

impl Scheduler {
    /// A scheduler of `permits` run permits (the number of threads that run guests), which
    /// calls `interrupt` to end the running guests' time slices early.
    pub(super) fn new(permits: usize, interrupt: impl Fn() + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Self { fair: Mutex::new(Fair::new(permits)), interrupt: Box::new(interrupt) })
    }

    /// Interrupts the running guests when every permit is held, so that a call about to be
    /// spawned is looked at now rather than at the next tick.
    pub(super) fn interrupt_if_full(&self) {
        let full = self.fair().free == 0;
        if full {
            (self.interrupt)();
        }
    }

    fn fair(&self) -> MutexGuard<'_, Fair<Waker>> {
        // The decision state stays whole whatever panicked while holding the lock.
        self.fair.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `call` under the scheduler as one call of `tenant`, weighted `share`, adding the
    /// CPU time of each of its polls to `account`.
    pub(super) fn schedule<F: Future>(
        self: &Arc<Self>,
        tenant: &Arc<str>,
        share: u32,
        account: Arc<CpuAccount>,
        call: F,
    ) -> Scheduled<F> {
        let id = self.fair().join(tenant, share);
        Scheduled { call: Box::pin(call), ticket: Ticket { scheduler: self.clone(), id }, account }
    }
}

/// One call's place under the [`Scheduler`]; dropping it (the call ended, timed out or was
/// aborted) gives back the permit it holds or stops its wait for one, and hands the permit on.
struct Ticket {
    scheduler: Arc<Scheduler>,
    id: CallId,
}

impl Ticket {
    /// Whether the call holds a run permit; if not, `waker` is woken when it gets one, and the
    /// running guests are interrupted when it deserves a permit more than one of them.
    fn request(&self, waker: &Waker) -> bool {
        let asked = self.scheduler.fair().request(self.id, waker);
        if asked == Asked::Preempts {
            (self.scheduler.interrupt)();
        }
        asked.granted()
    }

    /// The call's poll used `cpu_ns`. A call that only yielded at a time slice's end keeps its
    /// permit unless a waiting call deserves it more; any other (one that waits for something
    /// else, or ended) gives it back.
    fn polled(&self, cpu_ns: u64, slice_ended: bool) {
        let next = {
            let mut fair = self.scheduler.fair();
            fair.charge(self.id, cpu_ns);
            if slice_ended && !fair.should_yield(self.id) {
                return;
            }
            fair.release(self.id, 0)
        };
        if let Some(next) = next {
            next.wake();
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let next = self.scheduler.fair().leave(self.id, 0);
        if let Some(next) = next {
            next.wake();
        }
    }
}

/// A call's future under the [`Scheduler`]: each poll waits for a run permit, runs with the
/// thread's CPU time added to the call's account and tenant, and keeps or gives back the permit.
/// A call waiting for a permit is an ordinary pending future, so its wall-clock deadline and an
/// abort end it as they end any other.
pub(super) struct Scheduled<F> {
    call: Pin<Box<F>>,
    ticket: Ticket,
    account: Arc<CpuAccount>,
}

impl<F: Future> Future for Scheduled<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        if !self.ticket.request(cx.waker()) {
            return Poll::Pending;
        }
        let start = self.account.slice_begins();
        let polled = self.call.as_mut().poll(cx);
        let cpu_ns = self.account.slice_ends(start);
        let slice_ended = self.account.take_slice_end() && polled.is_pending();
        self.ticket.polled(cpu_ns, slice_ended);
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn tenant(name: &str) -> Arc<str> {
        Arc::from(name)
    }

    /// Which call runs each of `slices` time slices of `slice` nanoseconds, from `running`, as
    /// the epoch callback and [`Scheduled`] drive `fair`: at each slice's end, the running call
    /// is charged and gives its permit up if a waiting call deserves it more.
    fn slices(fair: &mut Fair<CallId>, mut running: CallId, slice: u64, slices: usize) -> Vec<CallId> {
        let mut order = Vec::new();
        for _ in 0..slices {
            order.push(running);
            fair.charge(running, slice);
            if fair.should_yield(running) {
                let next = fair.release(running, 0).expect("a better call waits");
                fair.request(running, &running);
                running = next;
            }
        }
        order
    }

    #[test]
    fn under_contention_the_tenant_that_used_less_cpu_runs_first() {
        let mut fair = Fair::new(1);
        let (busy, quiet) = (tenant("busy"), tenant("quiet"));
        let light = fair.join(&quiet, 1);
        let hog = fair.join(&busy, 1);
        assert!(fair.request(light, &light).granted(), "a free permit is taken at once");
        assert!(!fair.request(hog, &hog).granted(), "the one permit is held");
        assert_eq!(fair.release(light, 10 * MS), Some(hog), "a call that waits in the host lets others run");
        let hog2 = fair.join(&busy, 1);
        fair.request(hog2, &hog2);
        fair.request(light, &light);
        fair.charge(hog, 50 * MS);
        assert!(fair.should_yield(hog), "a waiting tenant has used less");
        assert_eq!(fair.release(hog, 0), Some(light), "the quiet tenant runs before the busy one's new call");
        fair.request(hog, &hog);
        let order = slices(&mut fair, light, MS, 60);
        let first_busy = order.iter().position(|&call| call != light).expect("the busy tenant runs again");
        assert_eq!(first_busy, 40, "the quiet tenant runs until it has used as much: {order:?}");
    }

    #[test]
    fn a_tenant_gets_no_more_turns_for_having_more_calls() {
        let mut fair = Fair::new(1);
        let (many, one) = (tenant("many"), tenant("one"));
        let first = fair.join(&many, 1);
        assert!(fair.request(first, &first).granted());
        let others: Vec<CallId> = (0..8).map(|_| fair.join(&many, 1)).collect();
        let single = fair.join(&one, 1);
        for &call in others.iter().chain([&single]) {
            fair.request(call, &call);
        }
        let order = slices(&mut fair, first, MS, 20);
        let turns = order.iter().filter(|&&call| call == single).count();
        assert!((9..=11).contains(&turns), "one call of one tenant against nine of another: {turns} of 20");
    }

    #[test]
    fn weights_divide_cpu_in_proportion_to_cpu_share() {
        let mut fair = Fair::new(1);
        let (heavy, light) = (tenant("heavy"), tenant("light"));
        let a = fair.join(&heavy, 3);
        let b = fair.join(&light, 1);
        assert!(fair.request(a, &a).granted());
        fair.request(b, &b);
        let order = slices(&mut fair, a, MS, 40);
        let heavy_turns = order.iter().filter(|&&call| call == a).count();
        assert!((27..=33).contains(&heavy_turns), "share 3 against 1: {heavy_turns} of 40");
    }

    #[test]
    fn within_a_tenant_the_call_that_used_least_runs_first() {
        let mut fair = Fair::new(1);
        let acme = tenant("acme");
        let long = fair.join(&acme, 1);
        assert!(fair.request(long, &long).granted());
        fair.charge(long, 100 * MS);
        let short = fair.join(&acme, 1);
        fair.request(short, &short);
        assert!(fair.should_yield(long));
        assert_eq!(fair.release(long, 0), Some(short));
    }

    #[test]
    fn a_call_alone_keeps_running_and_every_permit_is_used() {
        let mut fair = Fair::new(2);
        let acme = tenant("acme");
        let calls: Vec<CallId> = (0..3).map(|_| fair.join(&acme, 1)).collect();
        assert!(fair.request(calls[0], &calls[0]).granted());
        fair.charge(calls[0], 10 * MS);
        assert!(!fair.should_yield(calls[0]), "nobody waits");
        assert!(fair.request(calls[1], &calls[1]).granted(), "a second permit is free");
        assert!(!fair.request(calls[2], &calls[2]).granted());
        assert_eq!(fair.leave(calls[1], MS), Some(calls[2]), "a call that ends hands its permit on");
        assert_eq!(fair.leave(calls[0], 0), None);
        assert!(!fair.request(calls[0] + 100, &0).granted(), "an unknown call gets nothing");
    }

    #[test]
    fn a_call_that_waits_behind_a_tenant_that_used_more_interrupts_the_running_guests() {
        let mut fair = Fair::new(1);
        let (busy, quiet) = (tenant("busy"), tenant("quiet"));
        let hog = fair.join(&busy, 1);
        assert!(fair.request(hog, &hog).granted());
        let hog2 = fair.join(&busy, 1);
        assert_eq!(fair.request(hog2, &hog2), Asked::Waits, "behind its own tenant, it waits for the tick");
        fair.charge(hog, 10 * MS);
        let light = fair.join(&quiet, 1);
        assert_eq!(
            fair.request(light, &light),
            Asked::Preempts,
            "the busy tenant used as much: interrupt it"
        );
        assert_eq!(fair.request(light, &light), Asked::Waits, "asked once per wait");
        fair.charge(hog, MS);
        assert!(fair.should_yield(hog), "interrupted, the busy call gives way");
        assert_eq!(fair.release(hog, 0), Some(light));
        let late = fair.join(&busy, 1);
        assert_eq!(fair.request(late, &late), Asked::Waits, "the quiet tenant runs and has used less");
    }

    #[test]
    fn a_tenant_that_returns_starts_with_no_credit_saved_while_idle() {
        let mut fair = Fair::new(1);
        let (busy, sleeper) = (tenant("busy"), tenant("sleeper"));
        let nap = fair.join(&sleeper, 1);
        fair.leave(nap, 0);
        let hog = fair.join(&busy, 1);
        assert!(fair.request(hog, &hog).granted());
        fair.charge(hog, 1_000 * MS);
        let back = fair.join(&sleeper, 1);
        fair.request(back, &back);
        // It starts where the busy tenant stands: after one slice of its own, it is behind.
        assert_eq!(fair.release(hog, 0), Some(back));
        fair.request(hog, &hog);
        assert_eq!(fair.release(back, MS), Some(hog), "no second turn on credit");
    }
}
