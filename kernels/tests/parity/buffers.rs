//! Buffers: allocation, upload, download, write, copy and fill.

use super::*;

backend_tests!(buffers);

fn buffers<B: Backend<F = f32>>(dev: &B, _twin: Option<&Cpu>) -> Result<()> {
    let v: Vec<f32> = (0..100).map(|i| i as f32 * 0.5 - 7.0).collect();
    let mut a = dev.upload(&v)?;
    same_bits("upload", &dev.download(&a)?, &v)?;
    dev.write(&mut a, &[1.0, 2.0, 3.0])?;
    let mut want = v.clone();
    want[..3].copy_from_slice(&[1.0, 2.0, 3.0]);
    same_bits("write", &dev.download(&a)?, &want)?;

    let mut z = dev.zeros(100)?;
    same_bits("zeros", &dev.download(&z)?, &[0.0; 100])?;
    dev.copy(&a, &mut z, 60)?;
    let mut want_z = vec![0.0; 100];
    want_z[..60].copy_from_slice(&want[..60]);
    same_bits("copy", &dev.download(&z)?, &want_z)?;
    dev.fill(&mut z, 10, -2.5)?;
    want_z[..10].fill(-2.5);
    same_bits("fill", &dev.download(&z)?, &want_z)?;

    let mut empty = dev.zeros(0)?;
    ensure!(dev.download(&empty)?.is_empty(), "zeros(0)");
    ensure!(dev.download(&dev.upload(&[])?)?.is_empty(), "upload(&[])");
    dev.write(&mut empty, &[])?;
    dev.copy(&a, &mut z, 0)?;
    dev.fill(&mut z, 0, 9.0)?;
    same_bits("len 0 changes nothing", &dev.download(&z)?, &want_z)?;

    let mut idx = dev.zeros_idx(8)?;
    dev.write_idx(&mut idx, &[1, 2, 3])?;
    ensure!(matches!(
        dev.write_idx(&mut idx, &[0; 9]),
        Err(Error::Shape { .. })
    ));
    ensure!(matches!(
        dev.copy(&a, &mut z, 101),
        Err(Error::Shape { .. })
    ));
    ensure!(matches!(
        dev.write(&mut empty, &[1.0]),
        Err(Error::Shape { .. })
    ));
    ensure!(matches!(
        dev.fill(&mut z, 101, 0.0),
        Err(Error::Shape { .. })
    ));
    Ok(())
}
