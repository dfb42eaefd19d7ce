//! `impl PackedBackend for CpuBackend`: every packed op is the single op's function
//! run on each trial's blocks in turn, so a trial's bits in a group are its bits alone.

use super::{CpuBackend, elementwise, loss, matmul, norm, reduce};
use crate::packed::{AdamHyper, PackedBackend, PackedBatchNorm, SgdHyper};
use crate::shape::{self, BatchNormLens};
use crate::{Activation, BatchNormMode, Float, Result, Transpose};

/// Trial `g`'s block of `per` elements in a buffer whose blocks are `stride` apart.
fn at<T>(buf: &[T], g: usize, stride: usize, per: usize) -> &[T] {
    &buf[g * stride..g * stride + per]
}

/// As [`at`], mutable.
fn at_mut<T>(buf: &mut [T], g: usize, stride: usize, per: usize) -> &mut [T] {
    &mut buf[g * stride..g * stride + per]
}

/// The trials that are on.
fn each_on(on: &[bool]) -> impl Iterator<Item = usize> + '_ {
    on.iter().enumerate().filter(|(_, on)| **on).map(|(g, _)| g)
}

impl<T: Float> PackedBackend for CpuBackend<T> {
    fn reserve_group(&self, _groups: usize) -> Result<()> {
        Ok(())
    }

    fn gather_batch_packed(
        &self,
        images: &&[u8],
        labels: &&[u8],
        orders: &Vec<u32>,
        order_stride: usize,
        start: usize,
        rows: usize,
        features: usize,
        scale: &Vec<T>,
        shift: &Vec<T>,
        channels: usize,
        x: &mut Vec<T>,
        x_stride: usize,
        y: &mut Vec<u32>,
        y_stride: usize,
        groups: usize,
    ) -> Result<()> {
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
        let n = labels.len();
        for g in 0..groups {
            let order = &orders[g * order_stride + start..g * order_stride + start + rows];
            if let Some(&bad) = order.iter().find(|&&i| i as usize >= n) {
                return Err(crate::Error::Device(format!(
                    "gather_batch: sample index {bad} is out of range for {n} samples"
                )));
            }
            elementwise::gather_batch(
                images,
                labels,
                order,
                features,
                &scale[..channels],
                &shift[..channels],
                at_mut(x, g, x_stride, rows * features),
                at_mut(y, g, y_stride, rows),
            );
        }
        Ok(())
    }

    fn matmul_batched(
        &self,
        a: &Vec<T>,
        a_stride: usize,
        ta: Transpose,
        b: &Vec<T>,
        b_stride: usize,
        tb: Transpose,
        c: &mut Vec<T>,
        c_stride: usize,
        m: usize,
        n: usize,
        k: usize,
        beta: T,
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
        for g in 0..groups {
            matmul::matmul(
                at(a, g, a_stride, m * k),
                ta,
                at(b, g, b_stride, k * n),
                tb,
                at_mut(c, g, c_stride, m * n),
                m,
                n,
                k,
                beta,
                self.threads,
            );
        }
        Ok(())
    }

    fn bias_act_packed(
        &self,
        x: &mut Vec<T>,
        stride: usize,
        bias: Option<&Vec<T>>,
        acts: &[Activation],
        on: &[bool],
        rows: usize,
        cols: usize,
    ) -> Result<()> {
        shape::bias_act_packed(
            x.len(),
            stride,
            bias.map(Vec::len),
            acts.len(),
            on.len(),
            rows,
            cols,
        )?;
        for g in each_on(on) {
            elementwise::bias_act(
                at_mut(x, g, stride, rows * cols),
                bias.map(|b| at(b, g, cols, cols)),
                acts[g],
                cols,
            );
        }
        Ok(())
    }

    fn act_backward_packed(
        &self,
        y: &Vec<T>,
        grad: &mut Vec<T>,
        stride: usize,
        acts: &[Activation],
        on: &[bool],
        len: usize,
    ) -> Result<()> {
        shape::act_backward_packed(y.len(), grad.len(), stride, acts.len(), on.len(), len)?;
        for g in each_on(on) {
            elementwise::act_backward(at(y, g, stride, len), at_mut(grad, g, stride, len), acts[g]);
        }
        Ok(())
    }

    fn sum_rows_packed(
        &self,
        x: &Vec<T>,
        stride: usize,
        rows: usize,
        cols: usize,
        out: &mut Vec<T>,
        groups: usize,
    ) -> Result<()> {
        shape::sum_rows_packed(x.len(), stride, rows, cols, out.len(), groups)?;
        for g in 0..groups {
            reduce::sum_rows(
                at(x, g, stride, rows * cols),
                rows,
                cols,
                at_mut(out, g, cols, cols),
            );
        }
        Ok(())
    }

    fn batchnorm_forward_packed(
        &self,
        x: &Vec<T>,
        y: &mut Vec<T>,
        stride: usize,
        bn: PackedBatchNorm<'_, Self>,
        rows: usize,
        cols: usize,
        eps: f64,
        mode: BatchNormMode,
        on: &[bool],
    ) -> Result<()> {
        let lens = BatchNormLens {
            gamma: bn.gamma.len(),
            beta: bn.beta.len(),
            running_mean: bn.running_mean.len(),
            running_var: bn.running_var.len(),
            xhat: bn.xhat.len(),
            invstd: bn.invstd.len(),
        };
        shape::batchnorm_forward_packed(x.len(), y.len(), stride, lens, rows, cols, on.len())?;
        let n = rows * cols;
        for g in each_on(on) {
            let slices = norm::BnSlices {
                gamma: at(bn.gamma, g, cols, cols),
                beta: at(bn.beta, g, cols, cols),
                running_mean: at_mut(bn.running_mean, g, cols, cols),
                running_var: at_mut(bn.running_var, g, cols, cols),
                xhat: at_mut(bn.xhat, g, stride, n),
                invstd: at_mut(bn.invstd, g, cols, cols),
            };
            norm::forward(
                at(x, g, stride, n),
                at_mut(y, g, stride, n),
                slices,
                rows,
                cols,
                eps,
                mode,
            );
        }
        Ok(())
    }

    fn batchnorm_backward_packed(
        &self,
        dy: &Vec<T>,
        xhat: &Vec<T>,
        dx: &mut Vec<T>,
        stride: usize,
        gamma: &Vec<T>,
        invstd: &Vec<T>,
        dgamma: &mut Vec<T>,
        dbeta: &mut Vec<T>,
        rows: usize,
        cols: usize,
        on: &[bool],
    ) -> Result<()> {
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
        let n = rows * cols;
        for g in each_on(on) {
            norm::backward(
                at(dy, g, stride, n),
                at(xhat, g, stride, n),
                at(gamma, g, cols, cols),
                at(invstd, g, cols, cols),
                at_mut(dx, g, stride, n),
                at_mut(dgamma, g, cols, cols),
                at_mut(dbeta, g, cols, cols),
                rows,
                cols,
            );
        }
        Ok(())
    }

    fn dropout_mask_packed(
        &self,
        mask: &mut Vec<T>,
        stride: usize,
        len: usize,
        p: &[f32],
        keys: &[u64],
        on: &[bool],
    ) -> Result<()> {
        shape::dropout_mask_packed(mask.len(), stride, len, p.len(), keys.len(), on.len())?;
        for g in each_on(on) {
            elementwise::dropout_mask(at_mut(mask, g, stride, len), p[g], keys[g]);
        }
        Ok(())
    }

    fn mul_packed(
        &self,
        x: &Vec<T>,
        m: &Vec<T>,
        out: &mut Vec<T>,
        stride: usize,
        len: usize,
        on: &[bool],
    ) -> Result<()> {
        shape::elementwise_packed(
            "mul_packed",
            &[("x", x.len()), ("m", m.len()), ("out", out.len())],
            stride,
            len,
            on.len(),
        )?;
        for g in each_on(on) {
            let (x, m) = (at(x, g, stride, len), at(m, g, stride, len));
            for ((o, &a), &b) in at_mut(out, g, stride, len).iter_mut().zip(x).zip(m) {
                *o = a * b;
            }
        }
        Ok(())
    }

    fn mul_assign_packed(
        &self,
        x: &mut Vec<T>,
        m: &Vec<T>,
        stride: usize,
        len: usize,
        on: &[bool],
    ) -> Result<()> {
        shape::elementwise_packed(
            "mul_assign_packed",
            &[("x", x.len()), ("m", m.len())],
            stride,
            len,
            on.len(),
        )?;
        for g in each_on(on) {
            for (a, &b) in at_mut(x, g, stride, len)
                .iter_mut()
                .zip(at(m, g, stride, len))
            {
                *a *= b;
            }
        }
        Ok(())
    }

    fn copy_packed(
        &self,
        src: &Vec<T>,
        dst: &mut Vec<T>,
        stride: usize,
        len: usize,
        on: &[bool],
    ) -> Result<()> {
        shape::elementwise_packed(
            "copy_packed",
            &[("src", src.len()), ("dst", dst.len())],
            stride,
            len,
            on.len(),
        )?;
        for g in each_on(on) {
            at_mut(dst, g, stride, len).copy_from_slice(at(src, g, stride, len));
        }
        Ok(())
    }

    fn softmax_xent_packed(
        &self,
        logits: &Vec<T>,
        logits_stride: usize,
        labels: &Vec<u32>,
        labels_stride: usize,
        rows: usize,
        cols: usize,
        mut dlogits: Option<&mut Vec<T>>,
        acc: &mut Vec<T>,
        on: &[bool],
    ) -> Result<()> {
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
        let n = rows * cols;
        for g in each_on(on) {
            loss::softmax_xent(
                at(logits, g, logits_stride, n),
                at(labels, g, labels_stride, rows),
                rows,
                cols,
                dlogits
                    .as_deref_mut()
                    .map(|d| at_mut(d, g, logits_stride, n)),
                at_mut(acc, g, 2, 2),
            )?;
        }
        Ok(())
    }

    fn penalty_grad_packed(
        &self,
        w: &Vec<T>,
        g: &mut Vec<T>,
        stride: usize,
        len: usize,
        l1: &[f64],
        l2: &[f64],
        on: &[bool],
    ) -> Result<()> {
        shape::penalty_grad_packed(w.len(), g.len(), stride, len, l1.len(), l2.len(), on.len())?;
        for t in each_on(on) {
            elementwise::penalty_grad(
                at(w, t, stride, len),
                at_mut(g, t, stride, len),
                l1[t],
                l2[t],
            );
        }
        Ok(())
    }

    fn sgd_step_packed(
        &self,
        w: &mut Vec<T>,
        g: &Vec<T>,
        velocity: &mut Vec<T>,
        stride: usize,
        len: usize,
        hyper: &[SgdHyper],
        on: &[bool],
    ) -> Result<()> {
        shape::optimizer_packed(
            "sgd_step_packed",
            &[("w", w.len()), ("g", g.len()), ("velocity", velocity.len())],
            stride,
            len,
            hyper.len(),
            None,
            on.len(),
        )?;
        for t in each_on(on) {
            let h = hyper[t];
            self.sgd_slices(
                at_mut(w, t, stride, len),
                at(g, t, stride, len),
                at_mut(velocity, t, stride, len),
                h.lr,
                h.momentum,
                h.weight_decay,
            );
        }
        Ok(())
    }

    fn adam_step_packed(
        &self,
        w: &mut Vec<T>,
        g: &Vec<T>,
        m: &mut Vec<T>,
        v: &mut Vec<T>,
        stride: usize,
        len: usize,
        hyper: &[AdamHyper],
        steps: &[u32],
        on: &[bool],
    ) -> Result<()> {
        shape::optimizer_packed(
            "adam_step_packed",
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
        for t in each_on(on) {
            let h = hyper[t];
            self.adam_slices(
                at_mut(w, t, stride, len),
                at(g, t, stride, len),
                at_mut(m, t, stride, len),
                at_mut(v, t, stride, len),
                h.lr,
                h.betas,
                h.eps,
                h.weight_decay,
                steps[t],
            );
        }
        Ok(())
    }

    fn grad_stats_packed(
        &self,
        g: &Vec<T>,
        stride: usize,
        len: usize,
        acc: &mut Vec<T>,
        on: &[bool],
    ) -> Result<()> {
        shape::grad_stats_packed(g.len(), stride, len, acc.len(), on.len())?;
        for t in each_on(on) {
            reduce::grad_stats(at(g, t, stride, len), at_mut(acc, t, 2, 2));
        }
        Ok(())
    }

    fn moments_packed(
        &self,
        x: &Vec<T>,
        stride: usize,
        len: usize,
        groups: usize,
    ) -> Result<Vec<[f64; 4]>> {
        shape::reduce_packed("moments_packed", &[("x", x.len())], stride, len, groups)?;
        Ok((0..groups)
            .map(|g| reduce::moments(at(x, g, stride, len)))
            .collect())
    }

    fn sq_dist_packed(
        &self,
        a: &Vec<T>,
        b: &Vec<T>,
        stride: usize,
        len: usize,
        groups: usize,
    ) -> Result<Vec<f64>> {
        shape::reduce_packed(
            "sq_dist_packed",
            &[("a", a.len()), ("b", b.len())],
            stride,
            len,
            groups,
        )?;
        Ok((0..groups)
            .map(|g| reduce::sq_dist(at(a, g, stride, len), at(b, g, stride, len)))
            .collect())
    }

    fn dead_columns_packed(
        &self,
        x: &Vec<T>,
        stride: usize,
        rows: usize,
        cols: usize,
        groups: usize,
    ) -> Result<Vec<usize>> {
        let per = shape::block("dead_columns_packed", rows, cols)?;
        shape::reduce_packed(
            "dead_columns_packed",
            &[("x", x.len())],
            stride,
            per,
            groups,
        )?;
        Ok((0..groups)
            .map(|g| reduce::dead_columns(at(x, g, stride, per), rows, cols))
            .collect())
    }
}
