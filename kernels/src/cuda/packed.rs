//! `impl PackedBackend for CudaBackend`: each packed op checks its buffers with
//! [`crate::shape`], stages the per-trial parameters (activation codes, on/off switches,
//! dropout keys, hyper-parameters) into the tables [`PackedBackend::reserve_group`]
//! allocated, then launches one kernel whose `blockIdx.y` is the trial (or one strided
//! batched cuBLAS GEMM). The `// SAFETY:` comments rely on those checks.

use super::CudaBackend;
use super::launch::{count, count2, driver, grid_1d, grid_columns, grid_partials, one_block};
use super::matmul::column_major;
use super::table::{PARTIAL_BLOCKS, activation_code};
use crate::activation::LEAKY_RELU_SLOPE;
use crate::packed::{AdamHyper, PackedBackend, PackedBatchNorm, SgdHyper};
use crate::shape::{self, BatchNormLens};
use crate::{Activation, BatchNormMode, Error, Result, Transpose};
use cudarc::cublas::{Gemm, StridedBatchedConfig};
use cudarc::driver::{CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg};
use std::sync::MutexGuard;

/// The most trials of one group: a launch's `gridDim.y` is the group.
pub const MAX_GROUP: usize = 65_535;
/// Floats of per-trial parameters per trial (Adam's six).
const FLOATS_PER_TRIAL: usize = 6;
/// Slots of per-trial int tables (activation codes, switches): a training step uses
/// about a dozen distinct ones, each kept in its slot.
const INT_SLOTS: usize = 32;
/// Slots of per-trial float tables.
const FLOAT_SLOTS: usize = 16;
/// Slots of per-trial dropout-key tables.
const KEY_SLOTS: usize = 4;
/// Device bytes [`PackedBackend::reserve_group`] allocates per trial: the parameter
/// tables, the reduction partials and the dead-column count.
pub const SCRATCH_BYTES_PER_TRIAL: usize = INT_SLOTS * 4
    + FLOAT_SLOTS * FLOATS_PER_TRIAL * 4
    + KEY_SLOTS * 8
    + 4 * PARTIAL_BLOCKS as usize * 8
    + 4;

/// The per-trial parameter tables and reduction scratch of packed ops, allocated once by
/// [`PackedBackend::reserve_group`].
pub(super) struct PackedScratch {
    /// The group size they were allocated for.
    groups: usize,
    /// Activation codes and on/off switches: [`INT_SLOTS`] tables of `groups`.
    ints: CudaSlice<i32>,
    int_slots: SlotCache<i32>,
    /// Float parameters: [`FLOAT_SLOTS`] tables of up to [`FLOATS_PER_TRIAL`] per trial.
    floats: CudaSlice<f32>,
    float_slots: SlotCache<f32>,
    /// Dropout keys: [`KEY_SLOTS`] tables of `groups`.
    keys: CudaSlice<u64>,
    key_slots: SlotCache<u64>,
    /// Reduction partials: 4 × `PARTIAL_BLOCKS` doubles per trial.
    partials: CudaSlice<f64>,
    /// Dead-column counts, one per trial.
    dead: CudaSlice<u32>,
}

/// `grid` with `groups` trials along y.
fn grouped(mut grid: LaunchConfig, groups: usize) -> LaunchConfig {
    grid.grid_dim.1 = groups as u32;
    grid
}

/// A stride as the kernels' `unsigned long long`.
fn wide(stride: usize) -> u64 {
    stride as u64
}

fn switches(on: &[bool]) -> Vec<i32> {
    on.iter().map(|&o| i32::from(o)).collect()
}

impl CudaBackend {
    /// The packed scratch, holding at least `groups` trials.
    fn packed(
        &self,
        op: &'static str,
        groups: usize,
    ) -> Result<MutexGuard<'_, Option<PackedScratch>>> {
        let guard = self.packed.lock().unwrap_or_else(|p| p.into_inner());
        match &*guard {
            Some(s) if s.groups >= groups => Ok(guard),
            Some(s) => Err(Error::Device(format!(
                "{op}: a group of {groups} trials, but reserve_group reserved {}",
                s.groups
            ))),
            None => Err(Error::Device(format!(
                "{op}: reserve_group was not called before a packed op"
            ))),
        }
    }

    /// The range of `buf` that holds `host`: a slot `cache` already filled with it, or
    /// the least recently used slot, written now. The copy is queued on the stream, so
    /// it lands after every kernel queued before has read the slot's old contents; in
    /// a training loop every table but the step-dependent ones (dropout keys, Adam's
    /// bias corrections) is found in its slot, so most ops copy nothing.
    fn stage<T: DeviceRepr + PartialEq + Clone>(
        &self,
        buf: &mut CudaSlice<T>,
        cache: &mut SlotCache<T>,
        host: &[T],
    ) -> Result<std::ops::Range<usize>> {
        let (slot, write) = cache.slot(host);
        let at = slot * cache.width;
        if write {
            self.stream
                .memcpy_htod(host, &mut buf.slice_mut(at..at + host.len()))
                .map_err(driver("staging per-trial parameters"))?;
        }
        Ok(at..at + host.len())
    }
}

/// Which per-trial table each slot of a table buffer holds, least recently used first
/// to go.
pub(super) struct SlotCache<T> {
    /// Elements per slot.
    width: usize,
    /// Each slot's contents (empty: never written) and when it was last used.
    slots: Vec<(Vec<T>, u64)>,
    clock: u64,
}

impl<T: PartialEq + Clone> SlotCache<T> {
    fn new(slots: usize, width: usize) -> Self {
        SlotCache {
            width,
            slots: vec![(Vec::new(), 0); slots],
            clock: 0,
        }
    }

    /// The slot for `host` (at most `width` elements, not empty) and whether it must be
    /// written: `false` when a slot already holds exactly `host`.
    fn slot(&mut self, host: &[T]) -> (usize, bool) {
        assert!(
            !host.is_empty() && host.len() <= self.width,
            "a table fits a slot"
        );
        self.clock += 1;
        if let Some(i) = self.slots.iter().position(|(c, _)| c.as_slice() == host) {
            self.slots[i].1 = self.clock;
            return (i, false);
        }
        let i = (0..self.slots.len())
            .min_by_key(|&i| self.slots[i].1)
            .expect("at least one slot");
        self.slots[i] = (host.to_vec(), self.clock);
        (i, true)
    }
}

impl PackedBackend for CudaBackend {
    fn reserve_group(&self, groups: usize) -> Result<()> {
        if groups > MAX_GROUP {
            return Err(Error::Device(format!(
                "reserve_group: {groups} trials, more than a launch's {MAX_GROUP}"
            )));
        }
        let mut guard = self.packed.lock().unwrap_or_else(|p| p.into_inner());
        if guard.as_ref().is_some_and(|s| s.groups >= groups) {
            return Ok(());
        }
        let n = groups.max(1);
        *guard = Some(PackedScratch {
            groups,
            ints: self.alloc_zeros(INT_SLOTS * n)?,
            int_slots: SlotCache::new(INT_SLOTS, n),
            floats: self.alloc_zeros(FLOAT_SLOTS * FLOATS_PER_TRIAL * n)?,
            float_slots: SlotCache::new(FLOAT_SLOTS, FLOATS_PER_TRIAL * n),
            keys: self.alloc_zeros(KEY_SLOTS * n)?,
            key_slots: SlotCache::new(KEY_SLOTS, n),
            partials: self.alloc_zeros(4 * PARTIAL_BLOCKS as usize * n)?,
            dead: self.alloc_zeros(n)?,
        });
        Ok(())
    }

    fn gather_batch_packed(
        &self,
        images: &CudaSlice<u8>,
        labels: &CudaSlice<u8>,
        orders: &CudaSlice<u32>,
        order_stride: usize,
        start: usize,
        rows: usize,
        features: usize,
        scale: &CudaSlice<f32>,
        shift: &CudaSlice<f32>,
        channels: usize,
        x: &mut CudaSlice<f32>,
        x_stride: usize,
        y: &mut CudaSlice<u32>,
        y_stride: usize,
        groups: usize,
    ) -> Result<()> {
        let op = "gather_batch_packed";
        shape::gather_batch_packed(
            images.len(),
            labels.len(),
            orders.len(),
            order_stride,
            start,
            rows,
            features,
            scale.len(),
            shift.len(),
            channels,
            (x.len(), x_stride),
            (y.len(), y_stride),
            groups,
        )?;
        let n = count2(op, rows, features)?;
        if n == 0 || groups == 0 {
            return Ok(());
        }
        drop(self.packed(op, groups)?);
        let start = count(op, "start", start)?;
        let rows = count(op, "rows", rows)?;
        let plane = count(op, "features / channels", features / channels)?;
        let features = count(op, "features", features)?;
        let channels = count(op, "channels", channels)?;
        let samples = count(op, "samples", labels.len())?;
        let (order_stride, x_stride, y_stride) =
            (wide(order_stride), wide(x_stride), wide(y_stride));
        let mut scratch = self.scratch();
        let mut launch = self
            .stream
            .launch_builder(&self.kernels().gather_batch_packed);
        launch
            .arg(images)
            .arg(labels)
            .arg(orders)
            .arg(&order_stride)
            .arg(&start)
            .arg(&rows)
            .arg(&features)
            .arg(&plane)
            .arg(&channels)
            .arg(&samples)
            .arg(scale)
            .arg(shift)
            .arg(x)
            .arg(&x_stride)
            .arg(y)
            .arg(&y_stride)
            .arg(&mut scratch.fault);
        // SAFETY: gather_batch_packed(images, labels, orders, order_stride, start, rows,
        // features, plane, channels, samples, scale, shift, x, x_stride, y, y_stride,
        // fault) in type and order; `shape::gather_batch_packed` checked every trial's
        // blocks of orders, x and y, scale/shift `channels` and images `samples ×
        // features`; sample indices are range-checked on the device; gridDim.y = groups.
        unsafe { launch.launch(grouped(grid_1d(n), groups)) }
            .map_err(driver("launching gather_batch_packed"))?;
        Ok(())
    }

    fn matmul_batched(
        &self,
        a: &CudaSlice<f32>,
        a_stride: usize,
        ta: Transpose,
        b: &CudaSlice<f32>,
        b_stride: usize,
        tb: Transpose,
        c: &mut CudaSlice<f32>,
        c_stride: usize,
        m: usize,
        n: usize,
        k: usize,
        beta: f32,
        groups: usize,
    ) -> Result<()> {
        shape::matmul_batched(
            (a.len(), a_stride),
            (b.len(), b_stride),
            (c.len(), c_stride),
            m,
            n,
            k,
            groups,
        )?;
        if m == 0 || n == 0 || groups == 0 {
            return Ok(());
        }
        if k == 0 {
            if beta == 0.0 {
                for g in 0..groups {
                    let at = g * c_stride;
                    self.stream
                        .memset_zeros(&mut c.slice_mut(at..at + m * n))
                        .map_err(driver("matmul_batched: zeroing an empty product"))?;
                }
            }
            return Ok(());
        }
        let (gemm, first, second) = column_major(a, ta, b, tb, m, n, k, beta)?;
        let stride = |what: &str, s: usize| {
            i64::try_from(s).map_err(|_| {
                Error::Device(format!("matmul_batched: {what} stride {s} is too large"))
            })
        };
        let cfg = StridedBatchedConfig {
            gemm,
            batch_size: i32::try_from(groups)
                .map_err(|_| Error::Device(format!("matmul_batched: {groups} trials")))?,
            // `column_major` hands cuBLAS b first, then a.
            stride_a: stride("b", b_stride)?,
            stride_b: stride("a", a_stride)?,
            stride_c: stride("c", c_stride)?,
        };
        self.device
            .ctx
            .bind_to_thread()
            .map_err(driver("binding the context for cuBLAS"))?;
        // SAFETY: `shape::matmul_batched` checked that every trial's blocks (a: m×k,
        // b: k×n, c: m×n at g·stride) lie inside their buffers and that c's blocks do not
        // overlap; `column_major` gives cuBLAS exactly those extents and the strides
        // follow its operand order; all buffers live on this backend's stream, which the
        // handle uses, and `c` is borrowed mutably, so it aliases neither input.
        unsafe { self.blas.gemm_strided_batched(cfg, first, second, c) }.map_err(|e| Error::Cuda {
            call: format!("cublasSgemmStridedBatched ({groups} × {m}×{k} · {k}×{n})"),
            message: format!("{:?}", e.0),
        })
    }

    fn bias_act_packed(
        &self,
        x: &mut CudaSlice<f32>,
        stride: usize,
        bias: Option<&CudaSlice<f32>>,
        acts: &[Activation],
        on: &[bool],
        rows: usize,
        cols: usize,
    ) -> Result<()> {
        let op = "bias_act_packed";
        shape::bias_act_packed(
            x.len(),
            stride,
            bias.map(CudaSlice::len),
            acts.len(),
            on.len(),
            rows,
            cols,
        )?;
        let groups = on.len();
        let n = count2(op, rows, cols)?;
        if n == 0 || groups == 0 {
            return Ok(());
        }
        let mut guard = self.packed(op, groups)?;
        let scratch = guard.as_mut().expect("checked by packed()");
        let codes: Vec<i32> = acts.iter().map(|&a| activation_code(a)).collect();
        let ints_0 = self.stage(&mut scratch.ints, &mut scratch.int_slots, &codes)?;
        let ints_g = self.stage(&mut scratch.ints, &mut scratch.int_slots, &switches(on))?;
        let (acts_d, on_d) = (
            scratch.ints.slice(ints_0.clone()),
            scratch.ints.slice(ints_g.clone()),
        );
        let (stride, slope) = (wide(stride), LEAKY_RELU_SLOPE as f32);
        let grid = grouped(grid_1d(n), groups);
        match bias {
            Some(bias) => {
                let (rows, cols) = (rows as u32, cols as u32);
                let mut launch = self.stream.launch_builder(&self.kernels().bias_act_packed);
                launch
                    .arg(x)
                    .arg(&stride)
                    .arg(bias)
                    .arg(&rows)
                    .arg(&cols)
                    .arg(&acts_d)
                    .arg(&on_d)
                    .arg(&slope);
                // SAFETY: bias_act_packed(x, stride, bias, rows, cols, acts, on, slope) in
                // type and order; `shape::bias_act_packed` checked each trial's x block of
                // rows × cols and bias block of cols; acts and on hold `groups` ints
                // staged just before on this stream; gridDim.y = groups.
                unsafe { launch.launch(grid) }.map_err(driver("launching bias_act_packed"))?;
            }
            None => {
                let mut launch = self.stream.launch_builder(&self.kernels().act_only_packed);
                launch
                    .arg(x)
                    .arg(&stride)
                    .arg(&n)
                    .arg(&acts_d)
                    .arg(&on_d)
                    .arg(&slope);
                // SAFETY: act_only_packed(x, stride, len, acts, on, slope) in type and
                // order; each trial's x block holds n floats (`shape::bias_act_packed`);
                // acts and on as above.
                unsafe { launch.launch(grid) }.map_err(driver("launching act_only_packed"))?;
            }
        }
        Ok(())
    }

    fn act_backward_packed(
        &self,
        y: &CudaSlice<f32>,
        grad: &mut CudaSlice<f32>,
        stride: usize,
        acts: &[Activation],
        on: &[bool],
        len: usize,
    ) -> Result<()> {
        let op = "act_backward_packed";
        shape::act_backward_packed(y.len(), grad.len(), stride, acts.len(), on.len(), len)?;
        let groups = on.len();
        let n = count(op, "len", len)?;
        if n == 0 || groups == 0 {
            return Ok(());
        }
        let mut guard = self.packed(op, groups)?;
        let scratch = guard.as_mut().expect("checked by packed()");
        let codes: Vec<i32> = acts.iter().map(|&a| activation_code(a)).collect();
        let ints_0 = self.stage(&mut scratch.ints, &mut scratch.int_slots, &codes)?;
        let ints_g = self.stage(&mut scratch.ints, &mut scratch.int_slots, &switches(on))?;
        let (acts_d, on_d) = (
            scratch.ints.slice(ints_0.clone()),
            scratch.ints.slice(ints_g.clone()),
        );
        let (stride, slope) = (wide(stride), LEAKY_RELU_SLOPE as f32);
        let mut launch = self
            .stream
            .launch_builder(&self.kernels().act_backward_packed);
        launch
            .arg(y)
            .arg(grad)
            .arg(&stride)
            .arg(&n)
            .arg(&acts_d)
            .arg(&on_d)
            .arg(&slope);
        // SAFETY: act_backward_packed(y, grad, stride, len, acts, on, slope) in type and
        // order; `shape::act_backward_packed` checked each trial's blocks of len; acts
        // and on hold `groups` ints staged just before; gridDim.y = groups.
        unsafe { launch.launch(grouped(grid_1d(n), groups)) }
            .map_err(driver("launching act_backward_packed"))?;
        Ok(())
    }

    fn sum_rows_packed(
        &self,
        x: &CudaSlice<f32>,
        stride: usize,
        rows: usize,
        cols: usize,
        out: &mut CudaSlice<f32>,
        groups: usize,
    ) -> Result<()> {
        let op = "sum_rows_packed";
        shape::sum_rows_packed(x.len(), stride, rows, cols, out.len(), groups)?;
        count2(op, rows, cols)?;
        let rows = count(op, "rows", rows)?;
        let cols = count(op, "cols", cols)?;
        if cols == 0 || groups == 0 {
            return Ok(());
        }
        drop(self.packed(op, groups)?);
        let stride = wide(stride);
        let mut launch = self.stream.launch_builder(&self.kernels().sum_rows_packed);
        launch.arg(x).arg(&stride).arg(&rows).arg(&cols).arg(out);
        // SAFETY: sum_rows_packed(x, stride, rows, cols, out) in type and order;
        // `shape::sum_rows_packed` checked each trial's x block of rows × cols and out
        // block of cols; one (COL_TILE × ROW_THREADS) block per COL_TILE columns and trial.
        unsafe { launch.launch(grouped(grid_columns(cols), groups)) }
            .map_err(driver("launching sum_rows_packed"))?;
        Ok(())
    }

    fn batchnorm_forward_packed(
        &self,
        x: &CudaSlice<f32>,
        y: &mut CudaSlice<f32>,
        stride: usize,
        bn: PackedBatchNorm<'_, Self>,
        rows: usize,
        cols: usize,
        eps: f64,
        mode: BatchNormMode,
        on: &[bool],
    ) -> Result<()> {
        let op = "batchnorm_forward_packed";
        let lens = BatchNormLens {
            gamma: bn.gamma.len(),
            beta: bn.beta.len(),
            running_mean: bn.running_mean.len(),
            running_var: bn.running_var.len(),
            xhat: bn.xhat.len(),
            invstd: bn.invstd.len(),
        };
        shape::batchnorm_forward_packed(x.len(), y.len(), stride, lens, rows, cols, on.len())?;
        let groups = on.len();
        let n = count2(op, rows, cols)?;
        let rows32 = count(op, "rows", rows)?;
        let cols32 = count(op, "cols", cols)?;
        if cols == 0 || groups == 0 {
            return Ok(());
        }
        let mut guard = self.packed(op, groups)?;
        let scratch = guard.as_mut().expect("checked by packed()");
        let ints_g = self.stage(&mut scratch.ints, &mut scratch.int_slots, &switches(on))?;
        let on_d = scratch.ints.slice(ints_g.clone());
        let stride = wide(stride);
        match mode {
            BatchNormMode::Eval => {
                if n == 0 {
                    return Ok(());
                }
                let eps = eps as f32;
                let mut launch = self
                    .stream
                    .launch_builder(&self.kernels().batchnorm_eval_packed);
                launch
                    .arg(x)
                    .arg(y)
                    .arg(&stride)
                    .arg(bn.gamma)
                    .arg(bn.beta)
                    .arg(&*bn.running_mean)
                    .arg(&*bn.running_var)
                    .arg(&rows32)
                    .arg(&cols32)
                    .arg(&eps)
                    .arg(&on_d);
                // SAFETY: batchnorm_eval_packed(x, y, stride, gamma, beta, running_mean,
                // running_var, rows, cols, eps, on) in type and order;
                // `shape::batchnorm_forward_packed` checked each trial's blocks (rows ×
                // cols, and cols per feature); on holds `groups` ints; gridDim.y = groups.
                unsafe { launch.launch(grouped(grid_1d(n), groups)) }
                    .map_err(driver("launching batchnorm_eval_packed"))?;
            }
            BatchNormMode::Train { .. } | BatchNormMode::TrainFrozen => {
                let (update, momentum): (i32, f64) = match mode {
                    BatchNormMode::Train { momentum } => (1, momentum),
                    _ => (0, 0.0),
                };
                let mut launch = self
                    .stream
                    .launch_builder(&self.kernels().batchnorm_train_packed);
                launch
                    .arg(x)
                    .arg(y)
                    .arg(&stride)
                    .arg(bn.gamma)
                    .arg(bn.beta)
                    .arg(bn.running_mean)
                    .arg(bn.running_var)
                    .arg(bn.xhat)
                    .arg(bn.invstd)
                    .arg(&rows32)
                    .arg(&cols32)
                    .arg(&eps)
                    .arg(&update)
                    .arg(&momentum)
                    .arg(&on_d);
                // SAFETY: batchnorm_train_packed(x, y, stride, gamma, beta, running_mean,
                // running_var, xhat, invstd, rows, cols, eps, update_running, momentum,
                // on) in type and order (eps, momentum doubles); blocks checked by
                // `shape::batchnorm_forward_packed`; one (COL_TILE × ROW_THREADS) block per
                // COL_TILE columns and trial, as the kernel's reduction assumes.
                unsafe { launch.launch(grouped(grid_columns(cols32), groups)) }
                    .map_err(driver("launching batchnorm_train_packed"))?;
            }
        }
        Ok(())
    }

    fn batchnorm_backward_packed(
        &self,
        dy: &CudaSlice<f32>,
        xhat: &CudaSlice<f32>,
        dx: &mut CudaSlice<f32>,
        stride: usize,
        gamma: &CudaSlice<f32>,
        invstd: &CudaSlice<f32>,
        dgamma: &mut CudaSlice<f32>,
        dbeta: &mut CudaSlice<f32>,
        rows: usize,
        cols: usize,
        on: &[bool],
    ) -> Result<()> {
        let op = "batchnorm_backward_packed";
        shape::batchnorm_backward_packed(
            dy.len(),
            xhat.len(),
            dx.len(),
            stride,
            gamma.len(),
            invstd.len(),
            dgamma.len(),
            dbeta.len(),
            rows,
            cols,
            on.len(),
        )?;
        let groups = on.len();
        count2(op, rows, cols)?;
        let rows = count(op, "rows", rows)?;
        let cols = count(op, "cols", cols)?;
        if cols == 0 || groups == 0 {
            return Ok(());
        }
        let mut guard = self.packed(op, groups)?;
        let scratch = guard.as_mut().expect("checked by packed()");
        let ints_g = self.stage(&mut scratch.ints, &mut scratch.int_slots, &switches(on))?;
        let on_d = scratch.ints.slice(ints_g.clone());
        let stride = wide(stride);
        let mut launch = self
            .stream
            .launch_builder(&self.kernels().batchnorm_backward_packed);
        launch
            .arg(dy)
            .arg(xhat)
            .arg(dx)
            .arg(&stride)
            .arg(gamma)
            .arg(invstd)
            .arg(dgamma)
            .arg(dbeta)
            .arg(&rows)
            .arg(&cols)
            .arg(&on_d);
        // SAFETY: batchnorm_backward_packed(dy, xhat, dx, stride, gamma, invstd, dgamma,
        // dbeta, rows, cols, on) in type and order; blocks checked by
        // `shape::batchnorm_backward_packed`; one (COL_TILE × ROW_THREADS) block per
        // COL_TILE columns and trial.
        unsafe { launch.launch(grouped(grid_columns(cols), groups)) }
            .map_err(driver("launching batchnorm_backward_packed"))?;
        Ok(())
    }

    fn dropout_mask_packed(
        &self,
        mask: &mut CudaSlice<f32>,
        stride: usize,
        len: usize,
        p: &[f32],
        keys: &[u64],
        on: &[bool],
    ) -> Result<()> {
        let op = "dropout_mask_packed";
        shape::dropout_mask_packed(mask.len(), stride, len, p.len(), keys.len(), on.len())?;
        let groups = on.len();
        let n = count(op, "len", len)?;
        if n == 0 || groups == 0 {
            return Ok(());
        }
        let mut guard = self.packed(op, groups)?;
        let scratch = guard.as_mut().expect("checked by packed()");
        // Each scale rounded on the host as the CPU rounds it.
        let scales: Vec<f32> = p.iter().map(|&p| (1.0 / (1.0 - p as f64)) as f32).collect();
        let floats_0 = self.stage(&mut scratch.floats, &mut scratch.float_slots, p)?;
        let floats_g = self.stage(&mut scratch.floats, &mut scratch.float_slots, &scales)?;
        let keys_0 = self.stage(&mut scratch.keys, &mut scratch.key_slots, keys)?;
        let ints_g = self.stage(&mut scratch.ints, &mut scratch.int_slots, &switches(on))?;
        let ps = scratch.floats.slice(floats_0.clone());
        let scales = scratch.floats.slice(floats_g.clone());
        let keys = scratch.keys.slice(keys_0.clone());
        let on_d = scratch.ints.slice(ints_g.clone());
        let stride = wide(stride);
        let mut launch = self
            .stream
            .launch_builder(&self.kernels().dropout_mask_packed);
        launch
            .arg(mask)
            .arg(&stride)
            .arg(&n)
            .arg(&keys)
            .arg(&ps)
            .arg(&scales)
            .arg(&on_d);
        // SAFETY: dropout_mask_packed(mask, stride, len, keys, ps, scales, on) in type
        // and order; each trial's mask block holds len floats
        // (`shape::dropout_mask_packed`); keys, ps, scales and on hold `groups` values
        // staged just before; gridDim.y = groups.
        unsafe { launch.launch(grouped(grid_1d(n), groups)) }
            .map_err(driver("launching dropout_mask_packed"))?;
        Ok(())
    }

    fn mul_packed(
        &self,
        x: &CudaSlice<f32>,
        m: &CudaSlice<f32>,
        out: &mut CudaSlice<f32>,
        stride: usize,
        len: usize,
        on: &[bool],
    ) -> Result<()> {
        let op = "mul_packed";
        shape::elementwise_packed(
            op,
            &[("x", x.len()), ("m", m.len()), ("out", out.len())],
            stride,
            len,
            on.len(),
        )?;
        let groups = on.len();
        let n = count(op, "len", len)?;
        if n == 0 || groups == 0 {
            return Ok(());
        }
        let mut guard = self.packed(op, groups)?;
        let scratch = guard.as_mut().expect("checked by packed()");
        let ints_g = self.stage(&mut scratch.ints, &mut scratch.int_slots, &switches(on))?;
        let on_d = scratch.ints.slice(ints_g.clone());
        let stride = wide(stride);
        let mut launch = self.stream.launch_builder(&self.kernels().mul_packed);
        launch
            .arg(x)
            .arg(m)
            .arg(out)
            .arg(&stride)
            .arg(&n)
            .arg(&on_d);
        // SAFETY: mul_packed(x, m, out, stride, len, on) in type and order; each trial's
        // blocks hold len floats (`shape::elementwise_packed`); `out` is borrowed
        // mutably, so it aliases neither input; gridDim.y = groups.
        unsafe { launch.launch(grouped(grid_1d(n), groups)) }
            .map_err(driver("launching mul_packed"))?;
        Ok(())
    }

    fn mul_assign_packed(
        &self,
        x: &mut CudaSlice<f32>,
        m: &CudaSlice<f32>,
        stride: usize,
        len: usize,
        on: &[bool],
    ) -> Result<()> {
        let op = "mul_assign_packed";
        shape::elementwise_packed(op, &[("x", x.len()), ("m", m.len())], stride, len, on.len())?;
        let groups = on.len();
        let n = count(op, "len", len)?;
        if n == 0 || groups == 0 {
            return Ok(());
        }
        let mut guard = self.packed(op, groups)?;
        let scratch = guard.as_mut().expect("checked by packed()");
        let ints_g = self.stage(&mut scratch.ints, &mut scratch.int_slots, &switches(on))?;
        let on_d = scratch.ints.slice(ints_g.clone());
        let stride = wide(stride);
        let mut launch = self
            .stream
            .launch_builder(&self.kernels().mul_assign_packed);
        launch.arg(x).arg(m).arg(&stride).arg(&n).arg(&on_d);
        // SAFETY: mul_assign_packed(x, m, stride, len, on) in type and order; blocks of
        // len floats (`shape::elementwise_packed`); gridDim.y = groups.
        unsafe { launch.launch(grouped(grid_1d(n), groups)) }
            .map_err(driver("launching mul_assign_packed"))?;
        Ok(())
    }

    fn copy_packed(
        &self,
        src: &CudaSlice<f32>,
        dst: &mut CudaSlice<f32>,
        stride: usize,
        len: usize,
        on: &[bool],
    ) -> Result<()> {
        let op = "copy_packed";
        shape::elementwise_packed(
            op,
            &[("src", src.len()), ("dst", dst.len())],
            stride,
            len,
            on.len(),
        )?;
        let groups = on.len();
        let n = count(op, "len", len)?;
        if n == 0 || groups == 0 {
            return Ok(());
        }
        let mut guard = self.packed(op, groups)?;
        let scratch = guard.as_mut().expect("checked by packed()");
        let ints_g = self.stage(&mut scratch.ints, &mut scratch.int_slots, &switches(on))?;
        let on_d = scratch.ints.slice(ints_g.clone());
        let stride = wide(stride);
        let mut launch = self.stream.launch_builder(&self.kernels().copy_packed);
        launch.arg(src).arg(dst).arg(&stride).arg(&n).arg(&on_d);
        // SAFETY: copy_packed(src, dst, stride, len, on) in type and order; blocks of len
        // floats (`shape::elementwise_packed`); dst borrowed mutably; gridDim.y = groups.
        unsafe { launch.launch(grouped(grid_1d(n), groups)) }
            .map_err(driver("launching copy_packed"))?;
        Ok(())
    }

    fn softmax_xent_packed(
        &self,
        logits: &CudaSlice<f32>,
        logits_stride: usize,
        labels: &CudaSlice<u32>,
        labels_stride: usize,
        rows: usize,
        cols: usize,
        dlogits: Option<&mut CudaSlice<f32>>,
        acc: &mut CudaSlice<f32>,
        on: &[bool],
    ) -> Result<()> {
        let op = "softmax_xent_packed";
        let groups = on.len();
        shape::softmax_xent_packed(
            logits.len(),
            logits_stride,
            labels.len(),
            labels_stride,
            rows,
            cols,
            dlogits.as_ref().map(|d| d.len()),
            acc.len(),
            groups,
        )?;
        count2(op, rows, cols)?;
        let rows32 = count(op, "rows", rows)?;
        let cols32 = count(op, "cols", cols)?;
        if rows == 0 || groups == 0 {
            return Ok(());
        }
        let mut guard = self.packed(op, groups)?;
        let packed = guard.as_mut().expect("checked by packed()");
        let ints_g = self.stage(&mut packed.ints, &mut packed.int_slots, &switches(on))?;
        let on_d = packed.ints.slice(ints_g.clone());
        let (stride, labels_stride) = (wide(logits_stride), wide(labels_stride));
        let grid = grouped(one_block(), groups);
        let mut scratch = self.scratch();
        match dlogits {
            None => {
                let mut launch = self
                    .stream
                    .launch_builder(&self.kernels().softmax_xent_loss_packed);
                launch
                    .arg(logits)
                    .arg(&stride)
                    .arg(labels)
                    .arg(&labels_stride)
                    .arg(&rows32)
                    .arg(&cols32)
                    .arg(acc)
                    .arg(&on_d)
                    .arg(&mut scratch.fault);
                // SAFETY: softmax_xent_loss_packed(logits, stride, labels, labels_stride,
                // rows, cols, acc, on, fault) in type and order; on holds `groups` ints; each trial's blocks checked
                // by `shape::softmax_xent_packed`; labels range-checked on the device;
                // one block of BLOCK threads per trial, as the reduction assumes.
                unsafe { launch.launch(grid) }
                    .map_err(driver("launching softmax_xent_loss_packed"))?;
            }
            Some(dlogits) => {
                let inv_rows = (1.0 / rows as f64) as f32;
                let mut launch = self
                    .stream
                    .launch_builder(&self.kernels().softmax_xent_grad_packed);
                launch
                    .arg(logits)
                    .arg(&stride)
                    .arg(labels)
                    .arg(&labels_stride)
                    .arg(&rows32)
                    .arg(&cols32)
                    .arg(dlogits)
                    .arg(&inv_rows)
                    .arg(acc)
                    .arg(&on_d)
                    .arg(&mut scratch.fault);
                // SAFETY: softmax_xent_grad_packed(logits, stride, labels, labels_stride,
                // rows, cols, dlogits, inv_rows, acc, on, fault) in type and order; as above,
                // and each trial's dlogits block holds rows × cols floats.
                unsafe { launch.launch(grid) }
                    .map_err(driver("launching softmax_xent_grad_packed"))?;
            }
        }
        Ok(())
    }

    fn penalty_grad_packed(
        &self,
        w: &CudaSlice<f32>,
        g: &mut CudaSlice<f32>,
        stride: usize,
        len: usize,
        l1: &[f64],
        l2: &[f64],
        on: &[bool],
    ) -> Result<()> {
        let op = "penalty_grad_packed";
        shape::penalty_grad_packed(w.len(), g.len(), stride, len, l1.len(), l2.len(), on.len())?;
        let groups = on.len();
        let n = count(op, "len", len)?;
        if n == 0 || groups == 0 {
            return Ok(());
        }
        let mut guard = self.packed(op, groups)?;
        let scratch = guard.as_mut().expect("checked by packed()");
        // Rounded as the CPU rounds them: l1 and 2·l2 (the product taken in f64).
        let l1s: Vec<f32> = l1.iter().map(|&v| v as f32).collect();
        let two_l2s: Vec<f32> = l2.iter().map(|&v| (2.0 * v) as f32).collect();
        let floats_0 = self.stage(&mut scratch.floats, &mut scratch.float_slots, &l1s)?;
        let floats_g = self.stage(&mut scratch.floats, &mut scratch.float_slots, &two_l2s)?;
        let ints_g = self.stage(&mut scratch.ints, &mut scratch.int_slots, &switches(on))?;
        let l1_d = scratch.floats.slice(floats_0.clone());
        let l2_d = scratch.floats.slice(floats_g.clone());
        let on_d = scratch.ints.slice(ints_g.clone());
        let stride = wide(stride);
        let mut launch = self
            .stream
            .launch_builder(&self.kernels().penalty_grad_packed);
        launch
            .arg(w)
            .arg(g)
            .arg(&stride)
            .arg(&n)
            .arg(&l1_d)
            .arg(&l2_d)
            .arg(&on_d);
        // SAFETY: penalty_grad_packed(w, grad, stride, len, l1s, two_l2s, on) in type and
        // order; blocks of len floats (`shape::penalty_grad_packed`); the tables hold
        // `groups` values staged just before; gridDim.y = groups.
        unsafe { launch.launch(grouped(grid_1d(n), groups)) }
            .map_err(driver("launching penalty_grad_packed"))?;
        Ok(())
    }

    fn sgd_step_packed(
        &self,
        w: &mut CudaSlice<f32>,
        g: &CudaSlice<f32>,
        velocity: &mut CudaSlice<f32>,
        stride: usize,
        len: usize,
        hyper: &[SgdHyper],
        on: &[bool],
    ) -> Result<()> {
        let op = "sgd_step_packed";
        shape::optimizer_packed(
            op,
            &[("w", w.len()), ("g", g.len()), ("velocity", velocity.len())],
            stride,
            len,
            hyper.len(),
            None,
            on.len(),
        )?;
        let groups = on.len();
        let n = count(op, "len", len)?;
        if n == 0 || groups == 0 {
            return Ok(());
        }
        let mut guard = self.packed(op, groups)?;
        let scratch = guard.as_mut().expect("checked by packed()");
        let pick = |f: fn(&SgdHyper) -> f64| hyper.iter().map(|h| f(h) as f32).collect::<Vec<_>>();
        let floats_0 = self.stage(
            &mut scratch.floats,
            &mut scratch.float_slots,
            &pick(|h| h.lr),
        )?;
        let floats_g = self.stage(
            &mut scratch.floats,
            &mut scratch.float_slots,
            &pick(|h| h.momentum),
        )?;
        let floats_2g = self.stage(
            &mut scratch.floats,
            &mut scratch.float_slots,
            &pick(|h| h.weight_decay),
        )?;
        let ints_g = self.stage(&mut scratch.ints, &mut scratch.int_slots, &switches(on))?;
        let lrs = scratch.floats.slice(floats_0.clone());
        let mus = scratch.floats.slice(floats_g.clone());
        let wds = scratch.floats.slice(floats_2g.clone());
        let on_d = scratch.ints.slice(ints_g.clone());
        let stride = wide(stride);
        let mut launch = self.stream.launch_builder(&self.kernels().sgd_step_packed);
        launch
            .arg(w)
            .arg(g)
            .arg(velocity)
            .arg(&stride)
            .arg(&n)
            .arg(&lrs)
            .arg(&mus)
            .arg(&wds)
            .arg(&on_d);
        // SAFETY: sgd_step_packed(w, g, v, stride, len, lrs, mus, wds, on) in type and
        // order; blocks of len floats (`shape::optimizer_packed`); the tables hold
        // `groups` values staged just before; gridDim.y = groups.
        unsafe { launch.launch(grouped(grid_1d(n), groups)) }
            .map_err(driver("launching sgd_step_packed"))?;
        Ok(())
    }

    fn adam_step_packed(
        &self,
        w: &mut CudaSlice<f32>,
        g: &CudaSlice<f32>,
        m: &mut CudaSlice<f32>,
        v: &mut CudaSlice<f32>,
        stride: usize,
        len: usize,
        hyper: &[AdamHyper],
        steps: &[u32],
        on: &[bool],
    ) -> Result<()> {
        let op = "adam_step_packed";
        shape::optimizer_packed(
            op,
            &[
                ("w", w.len()),
                ("g", g.len()),
                ("m", m.len()),
                ("v", v.len()),
            ],
            stride,
            len,
            hyper.len(),
            Some(steps.len()),
            on.len(),
        )?;
        let groups = on.len();
        let n = count(op, "len", len)?;
        if n == 0 || groups == 0 {
            return Ok(());
        }
        let mut guard = self.packed(op, groups)?;
        let scratch = guard.as_mut().expect("checked by packed()");
        // Folded in f64 on the host per trial, exactly as `adam_step_impl` does.
        let mut table = Vec::with_capacity(FLOATS_PER_TRIAL * groups);
        for (h, &step) in hyper.iter().zip(steps) {
            let (beta1, beta2) = h.betas;
            let bc1 = 1.0 - beta1.powi(step as i32);
            let bc2 = 1.0 - beta2.powi(step as i32);
            table.extend([
                (h.lr / bc1) as f32,
                (1.0 / bc2.sqrt()) as f32,
                beta1 as f32,
                beta2 as f32,
                h.eps as f32,
                h.weight_decay as f32,
            ]);
        }
        let floats_0 = self.stage(&mut scratch.floats, &mut scratch.float_slots, &table)?;
        let ints_g = self.stage(&mut scratch.ints, &mut scratch.int_slots, &switches(on))?;
        let table = scratch.floats.slice(floats_0.clone());
        let on_d = scratch.ints.slice(ints_g.clone());
        let stride = wide(stride);
        let mut launch = self.stream.launch_builder(&self.kernels().adam_step_packed);
        launch
            .arg(w)
            .arg(g)
            .arg(m)
            .arg(v)
            .arg(&stride)
            .arg(&n)
            .arg(&table)
            .arg(&on_d);
        // SAFETY: adam_step_packed(w, g, m, v, stride, len, hyper, on) in type and order;
        // blocks of len floats (`shape::optimizer_packed`); hyper holds 6 floats per
        // trial and on `groups` ints, staged just before; gridDim.y = groups.
        unsafe { launch.launch(grouped(grid_1d(n), groups)) }
            .map_err(driver("launching adam_step_packed"))?;
        Ok(())
    }

    fn grad_stats_packed(
        &self,
        g: &CudaSlice<f32>,
        stride: usize,
        len: usize,
        acc: &mut CudaSlice<f32>,
        on: &[bool],
    ) -> Result<()> {
        let op = "grad_stats_packed";
        let groups = on.len();
        shape::grad_stats_packed(g.len(), stride, len, acc.len(), groups)?;
        let n = count(op, "len", len)?;
        if groups == 0 {
            return Ok(());
        }
        let mut guard = self.packed(op, groups)?;
        let scratch = guard.as_mut().expect("checked by packed()");
        let ints_g = self.stage(&mut scratch.ints, &mut scratch.int_slots, &switches(on))?;
        let cfg = grid_partials(n);
        let blocks = cfg.grid_dim.0;
        let stride = wide(stride);
        let mut launch = self
            .stream
            .launch_builder(&self.kernels().moments_partial_packed);
        launch
            .arg(g)
            .arg(&stride)
            .arg(&n)
            .arg(&mut scratch.partials);
        // SAFETY: moments_partial_packed(x, stride, len, partials) in type and order;
        // each trial's block holds len floats (`shape::grad_stats_packed`); at most
        // PARTIAL_BLOCKS blocks per trial, each trial writing 4 × gridDim.x of its
        // 4 × PARTIAL_BLOCKS partials (reserved for `groups` trials).
        unsafe { launch.launch(grouped(cfg, groups)) }
            .map_err(driver("launching moments_partial_packed"))?;
        let mut launch = self
            .stream
            .launch_builder(&self.kernels().grad_stats_finish_packed);
        let on_d = scratch.ints.slice(ints_g.clone());
        launch
            .arg(&scratch.partials)
            .arg(&blocks)
            .arg(acc)
            .arg(&on_d);
        // SAFETY: grad_stats_finish_packed(partials, blocks, acc, on) in type and order; the
        // partials were just written on this stream; acc holds 2 floats per trial
        // (`shape::grad_stats_packed`); one block of BLOCK threads per trial.
        unsafe { launch.launch(grouped(one_block(), groups)) }
            .map_err(driver("launching grad_stats_finish_packed"))?;
        Ok(())
    }

    fn moments_packed(
        &self,
        x: &CudaSlice<f32>,
        stride: usize,
        len: usize,
        groups: usize,
    ) -> Result<Vec<[f64; 4]>> {
        let op = "moments_packed";
        shape::reduce_packed(op, &[("x", x.len())], stride, len, groups)?;
        let n = count(op, "len", len)?;
        if n == 0 || groups == 0 {
            return Ok(vec![[0.0; 4]; groups]);
        }
        let mut guard = self.packed(op, groups)?;
        let scratch = guard.as_mut().expect("checked by packed()");
        let cfg = grid_partials(n);
        let blocks = cfg.grid_dim.0 as usize;
        let stride = wide(stride);
        let mut launch = self
            .stream
            .launch_builder(&self.kernels().moments_partial_packed);
        launch
            .arg(x)
            .arg(&stride)
            .arg(&n)
            .arg(&mut scratch.partials);
        // SAFETY: as in grad_stats_packed.
        unsafe { launch.launch(grouped(cfg, groups)) }
            .map_err(driver("launching moments_partial_packed"))?;
        let partials = self.read_back(&scratch.partials, 4 * blocks * groups, op)?;
        drop(guard);
        self.check_faults()?;
        Ok(partials
            .chunks_exact(4 * blocks)
            .map(|p| {
                let part = |k: usize| &p[k * blocks..(k + 1) * blocks];
                [
                    part(0).iter().sum(),
                    part(1).iter().sum(),
                    part(2).iter().sum(),
                    part(3).iter().fold(0.0f64, |a, &b| a.max(b)),
                ]
            })
            .collect())
    }

    fn sq_dist_packed(
        &self,
        a: &CudaSlice<f32>,
        b: &CudaSlice<f32>,
        stride: usize,
        len: usize,
        groups: usize,
    ) -> Result<Vec<f64>> {
        let op = "sq_dist_packed";
        shape::reduce_packed(op, &[("a", a.len()), ("b", b.len())], stride, len, groups)?;
        let n = count(op, "len", len)?;
        if n == 0 || groups == 0 {
            return Ok(vec![0.0; groups]);
        }
        let mut guard = self.packed(op, groups)?;
        let scratch = guard.as_mut().expect("checked by packed()");
        let cfg = grid_partials(n);
        let blocks = cfg.grid_dim.0 as usize;
        let stride = wide(stride);
        let mut launch = self
            .stream
            .launch_builder(&self.kernels().sq_dist_partial_packed);
        launch
            .arg(a)
            .arg(b)
            .arg(&stride)
            .arg(&n)
            .arg(&mut scratch.partials);
        // SAFETY: sq_dist_partial_packed(a, b, stride, len, partials) in type and order;
        // blocks of len floats (`shape::reduce_packed`); each trial writes gridDim.x ≤
        // PARTIAL_BLOCKS partials at g · gridDim.x, inside the reserved partials.
        unsafe { launch.launch(grouped(cfg, groups)) }
            .map_err(driver("launching sq_dist_partial_packed"))?;
        let partials = self.read_back(&scratch.partials, blocks * groups, op)?;
        drop(guard);
        self.check_faults()?;
        Ok(partials
            .chunks_exact(blocks)
            .map(|p| p.iter().sum())
            .collect())
    }

    fn dead_columns_packed(
        &self,
        x: &CudaSlice<f32>,
        stride: usize,
        rows: usize,
        cols: usize,
        groups: usize,
    ) -> Result<Vec<usize>> {
        let op = "dead_columns_packed";
        let per = shape::block(op, rows, cols)?;
        shape::reduce_packed(op, &[("x", x.len())], stride, per, groups)?;
        count2(op, rows, cols)?;
        let rows = count(op, "rows", rows)?;
        let cols = count(op, "cols", cols)?;
        if cols == 0 || groups == 0 {
            return Ok(vec![0; groups]);
        }
        let mut guard = self.packed(op, groups)?;
        let scratch = guard.as_mut().expect("checked by packed()");
        self.stream
            .memset_zeros(&mut scratch.dead)
            .map_err(driver("zeroing the dead-column counts"))?;
        let stride = wide(stride);
        let mut launch = self
            .stream
            .launch_builder(&self.kernels().dead_columns_packed);
        launch
            .arg(x)
            .arg(&stride)
            .arg(&rows)
            .arg(&cols)
            .arg(&mut scratch.dead);
        // SAFETY: dead_columns_packed(x, stride, rows, cols, dead) in type and order;
        // blocks of rows × cols floats (`shape::reduce_packed`); dead holds one word per
        // reserved trial, zeroed just before on this stream.
        unsafe { launch.launch(grouped(grid_columns(cols), groups)) }
            .map_err(driver("launching dead_columns_packed"))?;
        let dead = self.read_back(&scratch.dead, groups, op)?;
        drop(guard);
        self.check_faults()?;
        Ok(dead.into_iter().map(|d| d as usize).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_already_in_a_slot_is_not_written_again() {
        let mut cache = SlotCache::<i32>::new(3, 4);
        assert_eq!(cache.slot(&[1, 0]), (0, true));
        assert_eq!(cache.slot(&[0, 1]), (1, true));
        assert_eq!(cache.slot(&[1, 0]), (0, false));
        assert_eq!(cache.slot(&[2, 2, 2]), (2, true));
        // Full: the least recently used slot (1, holding [0, 1]) goes.
        assert_eq!(cache.slot(&[3]), (1, true));
        assert_eq!(cache.slot(&[1, 0]), (0, false));
        assert_eq!(cache.slot(&[0, 1]), (2, true));
    }

    #[test]
    fn two_tables_of_one_op_never_share_a_slot() {
        // An op stages up to four tables before it launches: with at least that many
        // slots, the later ones never evict the earlier ones.
        let mut cache = SlotCache::<u64>::new(4, 1);
        for step in 0..100u64 {
            let slots: Vec<usize> = (0..4).map(|t| cache.slot(&[step * 10 + t]).0).collect();
            let mut unique = slots.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), 4, "step {step}: {slots:?}");
        }
    }
}
