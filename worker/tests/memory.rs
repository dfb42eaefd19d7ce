//! The memory estimate against what the trainer really allocates: this test binary
//! counts every heap allocation (a counting global allocator), builds models and runs
//! whole trials on the CPU, and compares the bytes with [`Estimate`]'s parts.
//!
//! One `#[test]` runs every case in turn, so that no other test's allocations count.

use gradsweep_kernels::CpuBackend;
use gradsweep_worker::config::TrialConfig;
use gradsweep_worker::memory::{Estimate, Place, Shapes};
use gradsweep_worker::model::Mlp;
use gradsweep_worker::train::{architecture, initial_params, optimizer_buffers};
use gradsweep_worker::trial;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; the counters
// are only arithmetic on the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
            PEAK.fetch_max(now, Ordering::SeqCst);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
            PEAK.fetch_max(now, Ordering::SeqCst);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::SeqCst);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let now = CURRENT.fetch_add(new_size - layout.size(), Ordering::SeqCst) + new_size
                    - layout.size();
                PEAK.fetch_max(now, Ordering::SeqCst);
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::SeqCst);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Starts measuring: the peak from now on is relative to what is held now.
fn start() -> usize {
    let now = CURRENT.load(Ordering::SeqCst);
    PEAK.store(now, Ordering::SeqCst);
    now
}

fn held_since(base: usize) -> usize {
    CURRENT.load(Ordering::SeqCst).saturating_sub(base)
}

fn peak_since(base: usize) -> usize {
    PEAK.load(Ordering::SeqCst).saturating_sub(base)
}

const CASES: [&str; 4] = [
    "hidden = [256, 128]\nbatch_size = 64\noptimizer = { kind = \"sgd\", lr = 0.01, momentum = 0.9 }",
    "hidden = [512, 256]\nbatch_size = 128\nbatchnorm = true\nregularization = \"dropout:0.2\"\noptimizer = { kind = \"adam\", lr = 1e-3 }",
    "hidden = [64, 64, 64, 64]\nbatch_size = 32\neval_batch_size = 100000\nbatchnorm = true",
    "hidden = [1024]\nbatch_size = 256\nregularization = \"dropout:0.5\"\n[gradcheck]\nlayer = \"none\"",
];

fn config(case: &str) -> TrialConfig {
    TrialConfig::from_toml_str(&format!(
        "dataset = \"synthetic:glyphs-tiny\"\nepochs = 2\n{case}"
    ))
    .expect("a valid trial")
}

fn model_parts(e: &Estimate) -> u64 {
    [
        "parameters",
        "gradients",
        "optimizer state",
        "activations",
        "batch norm",
        "dropout",
    ]
    .iter()
    .filter_map(|p| e.part(p))
    .map(|p| p.bytes)
    .sum()
}

/// What the CPU matrix multiply may hold besides the itemised buffers.
const SCRATCH: u64 = 4 << 20;

#[test]
fn the_estimates_match_what_models_trials_and_packed_groups_allocate() {
    single_trials();
    packed_groups();
}

/// A packed group of mixed members: its peak is within the group estimate, and the
/// estimate is not far above it.
fn packed_groups() {
    use gradsweep_worker::packed::{Member, train_group};
    let members = [
        "seed = 1\nbatchnorm = true\nactivation = \"tanh\"",
        "seed = 2\nregularization = \"dropout:0.2+l2:1e-4\"",
        "seed = 3\n[gradcheck]\nlayer = \"none\"",
    ];
    let configs: Vec<TrialConfig> = members
        .iter()
        .map(|m| config(&format!("hidden = [256, 128]\nbatch_size = 64\n{m}")))
        .collect();
    let data = trial::load_data(&configs[0]).expect("the built-in data loads");
    let backend = CpuBackend::<f32>::new(1);
    for size in [1, 3] {
        let refs: Vec<&TrialConfig> = configs[..size].iter().collect();
        let estimate = gradsweep_worker::memory::group_estimate(&refs, &data);
        let itemised = estimate.itemised(Place::Device) + estimate.itemised(Place::Host);
        let never = || false;
        fn quietly(_: gradsweep_worker::train::Event<'_>) {}
        let mut handlers: Vec<fn(gradsweep_worker::train::Event<'_>)> = vec![quietly; size];
        let mut group: Vec<Member<'_>> = refs
            .iter()
            .zip(handlers.iter_mut())
            .map(|(config, on_event)| Member {
                config,
                on_event,
                stop: &never,
            })
            .collect();
        let base = start();
        let records = train_group(&backend, &data, &mut group).expect("the group trains");
        let peak = peak_since(base) as u64;
        drop(records);
        eprintln!("packed group of {size}: peak {peak} bytes, estimate {itemised} bytes");
        assert!(
            peak <= itemised + SCRATCH,
            "a group of {size} peaked at {peak} bytes, above its estimate's {itemised}"
        );
        assert!(
            itemised <= peak + peak / 4 + (1 << 20),
            "a group of {size}: the estimate ({itemised} bytes) is far above its peak ({peak})"
        );
    }
}

fn single_trials() {
    let data = trial::load_data(&config(CASES[0])).expect("the built-in data loads");
    let backend = CpuBackend::<f32>::new(1);
    for case in CASES {
        let config = config(case);
        let estimate = Estimate::new(&Shapes::of(&config, &data));

        // The model alone: its buffers are exactly the model's parts of the estimate
        // (plus the layer list and the parameter names).
        let arch = architecture(&config, &data);
        let params: Vec<_> = initial_params(&config, &arch)
            .iter()
            .map(|(w, b)| {
                (
                    w.iter().map(|&x| x as f32).collect::<Vec<f32>>(),
                    b.iter().map(|&x| x as f32).collect::<Vec<f32>>(),
                )
            })
            .collect();
        let rows = gradsweep_worker::memory::max_rows(
            &config,
            data.train.len(),
            data.val.len(),
            data.test.len(),
        );
        let base = start();
        let mut model = Mlp::new(&backend, arch, &params, rows).expect("model");
        model
            .allocate_optimizer_state(&backend, optimizer_buffers(&config.optimizer))
            .expect("optimizer state");
        let held = held_since(base) as u64;
        drop(model);
        let expected = model_parts(&estimate);
        assert!(
            held >= expected && held <= expected + 8192,
            "{case}: the model holds {held} bytes, the estimate's model parts say {expected}"
        );

        // A whole trial: its peak is within the estimate, and the estimate is not far
        // above it.
        let itemised = estimate.itemised(Place::Device) + estimate.itemised(Place::Host);
        let base = start();
        let record = trial::run(&backend, &config, &data, &mut |_| {}).expect("trial runs");
        let peak = peak_since(base) as u64;
        drop(record);
        eprintln!("{case:?}: peak {peak} bytes, estimate {itemised} bytes");
        // The matrix multiply's packing buffers are not itemised: the reserve holds them.
        assert!(
            peak <= itemised + SCRATCH,
            "{case}: the trial peaked at {peak} bytes, above the estimate's {itemised}"
        );
        const { assert!(SCRATCH <= gradsweep_worker::memory::RESERVE_BYTES) };
        assert!(
            itemised <= peak + peak / 4 + (1 << 20),
            "{case}: the estimate ({itemised} bytes) is far above the trial's peak ({peak})"
        );
    }
}
