//! A GPU inventory given by the operator (`--gpus "0:A100:81920,1:A100:81920"`),
//! so that placement can be exercised on hosts without NVIDIA hardware.

use super::GpuInventory;
use tracseq_core::resources::{GpuInfo, MAX_GPUS, MAX_GPU_MEMORY_MB};
use tracseq_core::{Error, Result};

/// A fixed list of devices; no live readings.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConfiguredInventory {
    gpus: Vec<GpuInfo>,
}

impl ConfiguredInventory {
    /// A worker that declares it has no GPU (also the fallback of detection).
    pub fn none() -> Self {
        Self::default()
    }

    pub fn parse(spec: &str) -> Result<Self> {
        parse_gpu_list(spec).map(|gpus| ConfiguredInventory { gpus })
    }
}

impl GpuInventory for ConfiguredInventory {
    fn name(&self) -> &str {
        if self.gpus.is_empty() {
            "none"
        } else {
            "configured"
        }
    }

    fn snapshot(&self) -> Vec<GpuInfo> {
        self.gpus.clone()
    }
}

/// Parses `index:name:memory_mb` entries separated by commas, sorted by
/// index. `none` means no GPU. The name may itself contain `:`; the index
/// is what precedes the first one and the memory what follows the last.
pub fn parse_gpu_list(spec: &str) -> Result<Vec<GpuInfo>> {
    let bad = |m: String| Err(Error::Invalid(format!("gpus: {m}")));
    let spec = spec.trim();
    if spec.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    if spec.is_empty() {
        return bad("the GPU list is empty; write index:name:memory_mb entries \
             (e.g. 0:A100:81920) or \"none\""
            .into());
    }
    let mut gpus: Vec<GpuInfo> = Vec::new();
    for (n, entry) in spec.split(',').enumerate() {
        let n = n + 1;
        let entry = entry.trim();
        if entry.is_empty() {
            return bad(format!("entry {n} is empty"));
        }
        let shape = || format!("entry {n} ('{entry}') must be index:name:memory_mb");
        let (Some((index, rest)), Some((_, memory))) =
            (entry.split_once(':'), entry.rsplit_once(':'))
        else {
            return bad(shape());
        };
        let Some((name, _)) = rest.rsplit_once(':') else {
            return bad(shape());
        };
        let (index, name, memory) = (index.trim(), name.trim(), memory.trim());
        let Ok(index) = index.parse::<u32>() else {
            return bad(format!(
                "entry {n} ('{entry}'): index '{index}' is not a whole number"
            ));
        };
        if name.is_empty() {
            return bad(format!("entry {n} ('{entry}'): the name is empty"));
        }
        let memory_total_mb = match memory.parse::<u64>() {
            Ok(m) if (1..=MAX_GPU_MEMORY_MB).contains(&m) => m,
            _ => {
                return bad(format!(
                    "entry {n} ('{entry}'): memory '{memory}' must be a whole number \
                     of MiB in 1..={MAX_GPU_MEMORY_MB}"
                ))
            }
        };
        if gpus.iter().any(|g| g.index == index) {
            return bad(format!(
                "entry {n} ('{entry}'): index {index} is listed twice"
            ));
        }
        if gpus.len() >= MAX_GPUS as usize {
            return bad(format!("at most {MAX_GPUS} GPUs may be listed"));
        }
        gpus.push(GpuInfo {
            index,
            uuid: String::new(),
            name: name.to_string(),
            memory_total_mb,
            memory_free_mb: None,
            utilization_pct: None,
            temperature_c: None,
            power_w: None,
        });
    }
    gpus.sort_by_key(|g| g.index);
    Ok(gpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(spec: &str) -> String {
        match parse_gpu_list(spec) {
            Err(Error::Invalid(m)) => m,
            other => panic!("'{spec}' should be invalid, got {other:?}"),
        }
    }

    #[test]
    fn parses_the_documented_form() {
        let gpus = parse_gpu_list("0:A100:81920,1:A100:81920").unwrap();
        assert_eq!(gpus.len(), 2);
        assert_eq!(
            (
                gpus[1].index,
                gpus[1].name.as_str(),
                gpus[1].memory_total_mb
            ),
            (1, "A100", 81920)
        );
        assert_eq!((gpus[0].uuid.as_str(), gpus[0].memory_free_mb), ("", None));
    }

    #[test]
    fn tolerates_spaces_colons_in_names_and_any_order() {
        let gpus = parse_gpu_list(" 3 : NVIDIA H100 80GB HBM3 : 81559 , 1:vendor:model:T4:15360 ")
            .unwrap();
        let got: Vec<(u32, &str, u64)> = gpus
            .iter()
            .map(|g| (g.index, g.name.as_str(), g.memory_total_mb))
            .collect();
        assert_eq!(
            got,
            [
                (1, "vendor:model:T4", 15360),
                (3, "NVIDIA H100 80GB HBM3", 81559)
            ]
        );
    }

    #[test]
    fn none_means_no_gpu() {
        assert!(parse_gpu_list("none").unwrap().is_empty());
        assert!(parse_gpu_list(" NONE ").unwrap().is_empty());
        let inv = ConfiguredInventory::parse("none").unwrap();
        assert_eq!((inv.name(), inv.snapshot().len()), ("none", 0));
        let inv = ConfiguredInventory::parse("0:T4:15360").unwrap();
        assert_eq!((inv.name(), inv.snapshot().len()), ("configured", 1));
    }

    #[test]
    fn bad_lists_say_what_and_where() {
        assert!(err("").contains("the GPU list is empty"));
        assert_eq!(err("0:A100:81920,,1:A100:81920"), "gpus: entry 2 is empty");
        assert_eq!(err("0:A100:81920,"), "gpus: entry 2 is empty");
        assert_eq!(
            err("0:A100:81920,0:A100:81920"),
            "gpus: entry 2 ('0:A100:81920'): index 0 is listed twice"
        );
        assert_eq!(
            err("0:A100"),
            "gpus: entry 1 ('0:A100') must be index:name:memory_mb"
        );
        assert_eq!(
            err("A100"),
            "gpus: entry 1 ('A100') must be index:name:memory_mb"
        );
        assert_eq!(
            err("x:A100:81920"),
            "gpus: entry 1 ('x:A100:81920'): index 'x' is not a whole number"
        );
        assert_eq!(
            err("-1:A100:1"),
            "gpus: entry 1 ('-1:A100:1'): index '-1' is not a whole number"
        );
        assert_eq!(
            err("0: :81920"),
            "gpus: entry 1 ('0: :81920'): the name is empty"
        );
        assert!(err("0:A100:80GB").contains("memory '80GB' must be a whole number of MiB"));
        assert!(err("0:A100:0").contains("memory '0' must be"));
        assert!(err("0:A100:99999999999").contains("memory '99999999999' must be"));
        assert!(err("0:A100:").contains("memory '' must be"));
    }
}
