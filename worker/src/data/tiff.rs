//! Bilevel (1 bit per pixel) TIFF images, uncompressed or compressed with CCITT
//! modified Huffman (TIFF compression 2), as the Gurmukhi set's validation images are.
//!
//! # Why this module exists
//!
//! The `tiff` crate (0.11) parses the file — byte order, directory, tags — but refuses
//! to decode compression 2 ("compression method Huffman is unsupported"), and the `fax`
//! crate's Group 3 decoder expects an EOL code before every row, which modified Huffman
//! does not have. So this module takes the tags and the raw strip bytes from `tiff`,
//! and decodes the rows itself with `fax`'s T.4 code tables ([`fax::maps::white`] and
//! [`fax::maps::black`]: terminating and make-up codes). What is left here is the
//! modified-Huffman framing, which neither crate offers:
//!
//! - each row is T.4 one-dimensional coding: alternating white and black run lengths,
//!   starting with white (a row that starts black starts with a white run of 0); a run
//!   is zero or more make-up codes (multiples of 64) then one terminating code (0–63);
//! - a row ends when its runs add up to the image width: there is no EOL code;
//! - each row starts on a byte boundary: the bits left in the last byte are skipped.
//!
//! Pixels come out as ink (1) or background (0): with PhotometricInterpretation
//! WhiteIsZero (0) a black run is ink; with BlackIsZero (1), a 0 bit — which T.4 codes
//! as "white" — is black, so the white runs are ink. FillOrder 2 (least significant bit
//! first) is honoured by reversing each byte's bits.

use fax::BitReader;
use std::io::Cursor;
use tiff::decoder::Decoder;
use tiff::tags::Tag;

/// A decoded bilevel image: `width × height` values, row-major, 1 = ink, 0 = background.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bilevel {
    /// Columns.
    pub width: u32,
    /// Rows.
    pub height: u32,
    /// One byte per pixel: 1 for ink, 0 for background.
    pub pixels: Vec<u8>,
}

/// True when `bytes` start like a TIFF file (either byte order).
pub fn is_tiff(bytes: &[u8]) -> bool {
    bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*")
}

/// The image's width and height from its tags, without decoding the pixels.
pub fn dimensions(bytes: &[u8]) -> Result<(u32, u32), String> {
    let mut decoder = Decoder::new(Cursor::new(bytes)).map_err(|e| e.to_string())?;
    decoder.dimensions().map_err(|e| e.to_string())
}

/// Decodes a 1-bit TIFF (compression 1 or 2, WhiteIsZero or BlackIsZero, one sample
/// per pixel, strips). The error says what is wrong, in one line.
pub fn decode(bytes: &[u8]) -> Result<Bilevel, String> {
    let mut decoder = Decoder::new(Cursor::new(bytes)).map_err(|e| e.to_string())?;
    let (width, height) = decoder.dimensions().map_err(|e| e.to_string())?;
    let mut tag = |tag: Tag, default: u32| -> Result<u32, String> {
        decoder
            .find_tag_unsigned::<u32>(tag)
            .map(|v| v.unwrap_or(default))
            .map_err(|e| format!("tag {tag:?}: {e}"))
    };
    let bits = tag(Tag::BitsPerSample, 1)?;
    let samples = tag(Tag::SamplesPerPixel, 1)?;
    let compression = tag(Tag::Compression, 1)?;
    let photometric = tag(Tag::PhotometricInterpretation, u32::MAX)?;
    let fill_order = tag(Tag::FillOrder, 1)?;
    let rows_per_strip = tag(Tag::RowsPerStrip, height)?.max(1);
    if bits != 1 || samples != 1 {
        return Err(format!(
            "{samples} sample(s) of {bits} bit(s) per pixel; expected a bilevel image (1 sample of 1 bit)"
        ));
    }
    let ink_is_black = match photometric {
        0 => true,
        1 => false,
        u32::MAX => return Err("no PhotometricInterpretation tag".into()),
        p => {
            return Err(format!(
                "PhotometricInterpretation {p}; expected 0 (WhiteIsZero) or 1 (BlackIsZero)"
            ));
        }
    };
    let offsets = decoder
        .get_tag_u64_vec(Tag::StripOffsets)
        .map_err(|e| format!("StripOffsets: {e}"))?;
    let counts = decoder
        .get_tag_u64_vec(Tag::StripByteCounts)
        .map_err(|e| format!("StripByteCounts: {e}"))?;
    let strips = (height as usize).div_ceil(rows_per_strip as usize);
    if offsets.len() < strips || counts.len() < strips {
        return Err(format!(
            "{} strip offset(s) and {} byte count(s) for {strips} strip(s)",
            offsets.len(),
            counts.len()
        ));
    }

    // Reserve no more than a megapixel up front: the tags may claim any size.
    let mut pixels = Vec::with_capacity((width as usize * height as usize).min(1 << 20));
    for strip in 0..strips {
        let (start, len) = (offsets[strip] as usize, counts[strip] as usize);
        let data = start
            .checked_add(len)
            .and_then(|end| bytes.get(start..end))
            .ok_or_else(|| {
                format!(
                    "strip {strip} ({len} bytes at offset {start}) runs past the end of the file ({} bytes)",
                    bytes.len()
                )
            })?;
        let data: Vec<u8> = if fill_order == 2 {
            data.iter().map(|b| b.reverse_bits()).collect()
        } else {
            data.to_vec()
        };
        let first_row = strip * rows_per_strip as usize;
        let rows = (rows_per_strip as usize).min(height as usize - first_row);
        match compression {
            1 => unpack_rows(&data, width, rows, &mut pixels)
                .map_err(|e| format!("strip {strip}: {e}"))?,
            2 => decode_modified_huffman(&data, width, rows, &mut pixels)
                .map_err(|e| format!("strip {strip}: row {}", e.offset_rows(first_row)))?,
            c => {
                return Err(format!(
                    "TIFF compression {c} is not supported; expected 1 (none) or 2 (CCITT modified Huffman)"
                ));
            }
        }
    }
    if !ink_is_black {
        // BlackIsZero: the 1 bits (T.4's "black" runs) are white background.
        for p in &mut pixels {
            *p ^= 1;
        }
    }
    Ok(Bilevel {
        width,
        height,
        pixels,
    })
}

/// Uncompressed rows: each `⌈width/8⌉` bytes, most significant bit first; a 1 bit is
/// appended as 1.
fn unpack_rows(data: &[u8], width: u32, rows: usize, out: &mut Vec<u8>) -> Result<(), String> {
    let stride = (width as usize).div_ceil(8);
    if data.len() < stride * rows {
        return Err(format!(
            "{} bytes for {rows} rows of {stride} bytes",
            data.len()
        ));
    }
    for row in data.chunks_exact(stride).take(rows) {
        out.extend((0..width as usize).map(|x| (row[x / 8] >> (7 - x % 8)) & 1));
    }
    Ok(())
}

/// Where modified-Huffman data stopped making sense.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MhError {
    /// The row, from 0 within the data given.
    pub row: usize,
    /// The pixel column the bad run started at.
    pub column: u32,
    /// What was wrong.
    pub what: &'static str,
}

impl MhError {
    fn offset_rows(&self, first: usize) -> String {
        format!(
            "{}, column {}: {}",
            first + self.row,
            self.column,
            self.what
        )
    }
}

/// Decodes `rows` rows of CCITT modified Huffman (T.4 one-dimensional coding, no EOL
/// codes, each row byte-aligned) of `width` pixels, appending one byte per pixel:
/// 1 for a "black" run, 0 for a "white" run.
pub fn decode_modified_huffman(
    data: &[u8],
    width: u32,
    rows: usize,
    out: &mut Vec<u8>,
) -> Result<(), MhError> {
    // Two zero bytes past the end let the code tables look ahead at the last code of
    // the last row; no run code is all zeros, so they are never read as data.
    let bytes = data
        .iter()
        .copied()
        .chain([0, 0])
        .map(Ok::<u8, std::convert::Infallible>);
    let Ok(mut reader) = fax::ByteReader::new(bytes);
    for row in 0..rows {
        let mut column = 0u32;
        let mut black = false;
        while column < width {
            let error = |what| MhError { row, column, what };
            let run = read_run(&mut reader, black).ok_or_else(|| error("no valid run code"))?;
            if run > width - column {
                return Err(error("the run goes past the end of the row"));
            }
            out.extend(std::iter::repeat_n(black as u8, run as usize));
            column += run;
            black = !black;
        }
        let skip = reader.bits_to_byte_boundary();
        let Ok(()) = reader.consume(skip);
    }
    Ok(())
}

/// One run of a colour: make-up codes (each ≥ 64) until a terminating code (< 64).
fn read_run(reader: &mut impl BitReader, black: bool) -> Option<u32> {
    let mut run = 0u32;
    loop {
        let code = if black {
            fax::maps::black::decode(reader)?
        } else {
            fax::maps::white::decode(reader)?
        };
        run = run.checked_add(code as u32)?;
        if code < 64 {
            return Some(run);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fax::{BitWriter, VecWriter};
    use rand::{Rng, SeedableRng};

    /// Encodes rows (one byte per pixel, 1 = black) as modified Huffman, with `fax`'s
    /// code tables: the reference the decoder must invert.
    fn encode(pixels: &[u8], width: usize) -> Vec<u8> {
        let mut w = VecWriter::new();
        for row in pixels.chunks_exact(width) {
            let mut x = 0;
            let mut black = false;
            while x < width {
                let run = row[x..].iter().take_while(|&&p| p == black as u8).count();
                let mut left = run;
                loop {
                    let code = if left >= 64 {
                        // The largest make-up code that fits (2560 at most).
                        (left.min(2560) / 64 * 64) as u16
                    } else {
                        left as u16
                    };
                    let bits = if black {
                        fax::maps::black::encode(code)
                    } else {
                        fax::maps::white::encode(code)
                    }
                    .expect("a code for every run");
                    let Ok(()) = w.write(bits);
                    left -= code as usize;
                    if code < 64 {
                        break;
                    }
                }
                x += run;
                black = !black;
            }
            w.pad();
        }
        w.finish()
    }

    #[test]
    fn random_rows_of_many_widths_round_trip() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for width in [1usize, 7, 8, 32, 63, 64, 65, 200, 1800, 3000] {
            let rows = 5;
            // Runs of random lengths, short and long, so make-up codes are used.
            let mut pixels = Vec::new();
            let mut colour = rng.random_range(0..2u8);
            while pixels.len() < width * rows {
                let run = if rng.random_bool(0.2) {
                    rng.random_range(1..2 * width + 1)
                } else {
                    rng.random_range(1..9)
                };
                pixels.extend(std::iter::repeat_n(colour, run));
                colour ^= 1;
            }
            pixels.truncate(width * rows);
            let coded = encode(&pixels, width);
            let mut decoded = Vec::new();
            decode_modified_huffman(&coded, width as u32, rows, &mut decoded)
                .unwrap_or_else(|e| panic!("width {width}: {e:?}"));
            assert_eq!(decoded, pixels, "width {width}");
        }
    }

    #[test]
    fn all_white_all_black_and_black_first_rows() {
        let width = 32;
        let mut pixels = vec![0u8; width];
        pixels.extend(vec![1u8; width]);
        pixels.extend((0..width).map(|x| (x < 3) as u8));
        let mut decoded = Vec::new();
        decode_modified_huffman(&encode(&pixels, width), 32, 3, &mut decoded).unwrap();
        assert_eq!(decoded, pixels);
    }

    #[test]
    fn bad_data_is_an_error_not_a_panic() {
        let width = 32;
        let pixels: Vec<u8> = (0..width * 4).map(|i| ((i / 5) % 2) as u8).collect();
        let coded = encode(&pixels, width);
        // Cut short: the last rows have no codes left.
        let mut out = Vec::new();
        let err = decode_modified_huffman(&coded[..coded.len() / 2], 32, 4, &mut out)
            .expect_err("truncated data");
        assert!(err.row >= 1, "{err:?}");
        // Runs that add up past the width: one white run of 40 in a 32-pixel row.
        let mut w = VecWriter::new();
        let Ok(()) = w.write(fax::maps::white::encode(40).unwrap());
        let err =
            decode_modified_huffman(&w.finish(), 32, 1, &mut Vec::new()).expect_err("run too long");
        assert_eq!(err.what, "the run goes past the end of the row");
        // Garbage.
        for seed in 0..50u64 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let junk: Vec<u8> = (0..rng.random_range(0..40)).map(|_| rng.random()).collect();
            let _ = decode_modified_huffman(&junk, 32, 32, &mut Vec::new());
            let _ = decode(&junk);
        }
    }
}
