//! Devices: NVIDIA GPUs through NVML (loaded at run time), else the CPU as one or more slots.

use super::AgentError;
use ausweep_proto::v1;
use nvml_wrapper::enum_wrappers::device::{EccCounter, MemoryError, TemperatureSensor};
use nvml_wrapper::Nvml;
use std::sync::Arc;

/// Above this GPU temperature (°C) a device is reported unhealthy and gets no new jobs.
const MAX_TEMPERATURE_C: u32 = 92;

/// What a device is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A slot of the host CPU (its share of the cores).
    Cpu,
    /// A CUDA GPU.
    Cuda,
}

/// One device this worker offers.
#[derive(Debug, Clone)]
pub struct Dev {
    /// NVML index (the coordinator's device index); 0 for the CPU.
    pub index: u32,
    /// CPU or CUDA.
    pub kind: Kind,
    /// Product name.
    pub name: String,
    /// GPU UUID (empty for the CPU).
    pub uuid: String,
    /// Total memory, MiB (0 for the CPU).
    pub memory_mib: u64,
    /// Compute capability (major, minor).
    pub compute: Option<(i32, i32)>,
    /// Threads a trainer on this CPU slot uses (0 for a GPU).
    pub threads: usize,
}

/// Live health of one device.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Health {
    /// GPU utilisation, percent.
    pub utilisation: Option<u32>,
    /// Memory in use, MiB.
    pub memory_used_mib: Option<u64>,
    /// Temperature, °C.
    pub temperature_c: Option<u32>,
    /// Uncorrected volatile ECC errors.
    pub ecc_uncorrected: Option<u64>,
    /// Whether the device may take new jobs.
    pub healthy: bool,
}

/// The node's devices and, when present, the NVML handle that reads their health.
#[derive(Clone)]
pub struct Devices {
    nvml: Option<Arc<Nvml>>,
    /// The devices offered.
    pub list: Vec<Dev>,
    /// NVIDIA driver version, when NVML is present.
    pub driver: Option<String>,
}

impl Devices {
    /// Finds the GPUs (restricted to `only` when given); with none, the CPU as `cpu_slots`
    /// devices sharing `cpu_cores` cores (all when `None`) when `allow_cpu`.
    pub fn discover(
        only: Option<&[u32]>,
        allow_cpu: bool,
        cpu_slots: usize,
        cpu_cores: Option<usize>,
    ) -> Result<Self, AgentError> {
        let (nvml, list, driver) = match Nvml::init() {
            Ok(nvml) => {
                let n = nvml.device_count().unwrap_or(0);
                let mut list = Vec::new();
                for i in 0..n {
                    if only.is_some_and(|o| !o.contains(&i)) {
                        continue;
                    }
                    let Ok(d) = nvml.device_by_index(i) else {
                        continue;
                    };
                    list.push(Dev {
                        index: i,
                        kind: Kind::Cuda,
                        name: d.name().unwrap_or_else(|_| "NVIDIA GPU".into()),
                        uuid: d.uuid().unwrap_or_default(),
                        memory_mib: d.memory_info().map(|m| m.total >> 20).unwrap_or(0),
                        compute: d.cuda_compute_capability().ok().map(|c| (c.major, c.minor)),
                        threads: 0,
                    });
                }
                let driver = nvml.sys_driver_version().ok();
                (Some(Arc::new(nvml)), list, driver)
            }
            Err(e) => {
                eprintln!("ausweep worker: no NVML ({e}); no GPUs found");
                (None, Vec::new(), None)
            }
        };
        if let Some(o) = only {
            if let Some(missing) = o.iter().find(|i| !list.iter().any(|d| d.index == **i)) {
                if !(list.is_empty() && allow_cpu) {
                    return Err(AgentError::Devices(format!(
                        "--devices names GPU {missing}, which NVML does not list"
                    )));
                }
            }
        }
        if list.is_empty() {
            if !allow_cpu {
                return Err(AgentError::Devices(
                    "no GPU found; pass --allow-cpu to offer the CPU".into(),
                ));
            }
            return Ok(Self::cpu(cpu_slots, cpu_cores));
        }
        Ok(Self { nvml, list, driver })
    }

    /// The CPU as `slots` devices (at least one), each trainer on an equal share of `cores`
    /// (default: every core the process may use): on small images two one-thread trainers do
    /// more than one two-thread trainer, and workers sharing a node must not oversubscribe it.
    pub fn cpu(slots: usize, cores: Option<usize>) -> Self {
        let cores =
            cores.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let slots = slots.max(1);
        Self {
            nvml: None,
            list: (0..slots)
                .map(|i| Dev {
                    index: i as u32,
                    kind: Kind::Cpu,
                    name: "cpu".into(),
                    uuid: String::new(),
                    memory_mib: 0,
                    compute: None,
                    threads: (cores / slots).max(1),
                })
                .collect(),
            driver: None,
        }
    }

    /// Reads the health of device `index` (the CPU is always healthy).
    pub fn health(&self, index: u32) -> Health {
        let Some(nvml) = &self.nvml else {
            return Health {
                healthy: true,
                ..Default::default()
            };
        };
        let Ok(d) = nvml.device_by_index(index) else {
            return Health::default();
        };
        let temperature_c = d.temperature(TemperatureSensor::Gpu).ok();
        let ecc_uncorrected = d
            .total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile)
            .ok();
        Health {
            utilisation: d.utilization_rates().ok().map(|u| u.gpu),
            memory_used_mib: d.memory_info().ok().map(|m| m.used >> 20),
            temperature_c,
            ecc_uncorrected,
            healthy: temperature_c.is_none_or(|t| t < MAX_TEMPERATURE_C)
                && ecc_uncorrected.is_none_or(|e| e == 0),
        }
    }

    /// Telemetry for the coordinator's metrics: free memory, utilisation, temperature per GPU.
    pub fn stats(&self) -> Vec<v1::DeviceStats> {
        self.list
            .iter()
            .filter(|d| d.kind == Kind::Cuda)
            .map(|d| {
                let h = self.health(d.index);
                v1::DeviceStats {
                    index: d.index,
                    memory_free_mib: h.memory_used_mib.map(|u| d.memory_mib.saturating_sub(u)),
                    utilization: h.utilisation.map(|u| f64::from(u) / 100.0),
                    temperature_c: h.temperature_c.map(f64::from),
                }
            })
            .collect()
    }

    /// The devices as the protocol describes them, with current health.
    pub fn to_proto(&self) -> Vec<v1::Device> {
        self.list
            .iter()
            .map(|d| v1::Device {
                index: d.index,
                kind: match d.kind {
                    Kind::Cpu => v1::DeviceKind::Cpu,
                    Kind::Cuda => v1::DeviceKind::Cuda,
                } as i32,
                memory_mib: d.memory_mib,
                name: d.name.clone(),
                healthy: self.health(d.index).healthy,
            })
            .collect()
    }

    /// One line per device for the log.
    pub fn describe(&self) -> Vec<String> {
        self.list
            .iter()
            .map(|d| match d.kind {
                Kind::Cpu => format!("device {}: cpu ({} threads)", d.index, d.threads),
                Kind::Cuda => format!(
                    "device {}: {} {} ({} MiB, compute {}, driver {})",
                    d.index,
                    d.name,
                    d.uuid,
                    d.memory_mib,
                    d.compute
                        .map(|(a, b)| format!("{a}.{b}"))
                        .unwrap_or_else(|| "?".into()),
                    self.driver.as_deref().unwrap_or("?")
                ),
            })
            .collect()
    }
}

/// Parses `--devices 0,2`.
pub fn parse_list(s: &str) -> Result<Vec<u32>, String> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            p.trim()
                .parse::<u32>()
                .map_err(|_| format!("`{p}` is not a GPU index"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_list_parses() {
        assert_eq!(parse_list("0,2").unwrap(), vec![0, 2]);
        assert!(parse_list("0,x").is_err());
    }

    #[test]
    fn cpu_fallback_is_one_healthy_device() {
        let d = Devices::cpu(1, None);
        let p = d.to_proto();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].kind, v1::DeviceKind::Cpu as i32);
        assert!(p[0].healthy);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(d.list[0].threads, cores);
    }

    #[test]
    fn cpu_slots_share_the_cores() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let d = Devices::cpu(2, None);
        let p = d.to_proto();
        assert_eq!(p.iter().map(|p| p.index).collect::<Vec<_>>(), vec![0, 1]);
        assert!(p
            .iter()
            .all(|p| p.kind == v1::DeviceKind::Cpu as i32 && p.healthy));
        assert!(d.list.iter().all(|d| d.threads == (cores / 2).max(1)));
        assert_eq!(
            d.describe()[1],
            format!("device 1: cpu ({} threads)", (cores / 2).max(1))
        );
        // Zero slots is one.
        assert_eq!(Devices::cpu(0, None).list.len(), 1);
    }

    #[test]
    fn cpu_cores_cap_what_the_trainers_share() {
        // Two workers on one 2-core node, each told `--cpu-cores 1`: one thread per trainer.
        let d = Devices::cpu(1, Some(1));
        assert_eq!(d.list[0].threads, 1);
        let d = Devices::cpu(3, Some(12));
        assert_eq!(
            d.list.iter().map(|d| d.threads).collect::<Vec<_>>(),
            [4, 4, 4]
        );
        // Fewer cores than slots still gives every trainer a thread.
        assert!(Devices::cpu(4, Some(2)).list.iter().all(|d| d.threads == 1));
    }
}
