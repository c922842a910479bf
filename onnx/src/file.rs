//! Writing a model file, with its weights moved to an external data file when the model is too large for protobuf.

use std::io::Write;
use std::path::Path;

use prost::Message;

use crate::error::{Error, Result};
use crate::proto::{ModelProto, StringStringEntryProto, data_location};

/// ONNX Runtime parses a model file with protobuf, which reads at most 2 GiB; a model whose encoding would be larger
/// than this keeps its weights in an external data file instead (headroom left for the graph itself).
pub const INLINE_MODEL_LIMIT: usize = 2_000_000_000;
/// Initializers smaller than this stay in the model file even when the weights go to an external data file.
const EXTERNAL_MIN_BYTES: usize = 1024;
/// Offsets in an external data file are multiples of the page size, so that ONNX Runtime can map tensors in place.
const EXTERNAL_ALIGN: usize = 4096;

/// Writes `model` to `path`, and returns the names of the files written (relative to `path`'s folder).
///
/// A model that encodes to at most `inline_limit` bytes is one file. A larger one (a decoder of more than about
/// half a billion parameters, at [`INLINE_MODEL_LIMIT`]) keeps its graph in `path` and moves every initializer of at
/// least 1 KiB to `<file name>.data` beside it, as ONNX's external data: each tensor names that file, its offset and
/// its length. ONNX Runtime reads it when it loads `path` from disk. A stale `.data` file from an earlier export is
/// removed.
pub fn write_model(mut model: ModelProto, path: &Path, inline_limit: usize) -> Result<Vec<String>> {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Err(Error::NotAFile { path: path.to_path_buf() });
    };
    let data_name = format!("{name}.data");
    let data_path = path.with_file_name(&data_name);
    if data_path.exists() {
        std::fs::remove_file(&data_path).map_err(Error::io(&data_path))?;
    }
    let mut written = vec![name];
    if model.encoded_len() > inline_limit {
        let file = std::fs::File::create(&data_path).map_err(Error::io(&data_path))?;
        let mut data = std::io::BufWriter::new(file);
        let mut offset = 0usize;
        let initializers = model.graph.iter_mut().flat_map(|g| g.initializer.iter_mut());
        for tensor in initializers.filter(|t| t.raw_data.len() >= EXTERNAL_MIN_BYTES) {
            let padding = offset.next_multiple_of(EXTERNAL_ALIGN) - offset;
            data.write_all(&vec![0u8; padding]).map_err(Error::io(&data_path))?;
            offset += padding;
            let bytes = std::mem::take(&mut tensor.raw_data);
            data.write_all(&bytes).map_err(Error::io(&data_path))?;
            let entry = |key: &str, value: String| StringStringEntryProto { key: key.into(), value };
            tensor.external_data = vec![
                entry("location", data_name.clone()),
                entry("offset", offset.to_string()),
                entry("length", bytes.len().to_string()),
            ];
            tensor.data_location = data_location::EXTERNAL;
            offset += bytes.len();
        }
        data.flush().map_err(Error::io(&data_path))?;
        written.push(data_name);
    }
    std::fs::write(path, model.encode_to_vec()).map_err(Error::io(path))?;
    Ok(written)
}
