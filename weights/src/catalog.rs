//! The published weight files ausweep knows: where each comes from and the hash it must have.

use super::WeightsError;
use ausweep_proto::job::Backbone;

/// The network a catalog entry holds, which an import checks the tensors against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Net {
    /// A backbone with its 1000-way ImageNet classifier.
    Backbone(Backbone),
    /// MTCNN's proposal network.
    Pnet,
    /// MTCNN's refinement network.
    Rnet,
    /// MTCNN's output network.
    Onet,
}

/// How a download is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pin {
    /// The file's full sha256.
    Sha256(&'static str),
    /// The first hex digits of its sha256, as torchvision names and checks its files.
    Prefix(&'static str),
    /// No published hash: the first fetch records it (pass `--sha256` to pin one).
    Unpinned,
}

/// One published weight file.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// The name in the weights directory (`<name>.safetensors`) and in `ausweep weights`.
    pub name: &'static str,
    /// The network it holds.
    pub net: Net,
    /// Where it is published.
    pub url: &'static str,
    /// The hash a download must have.
    pub pin: Pin,
    /// Who published it, as recorded in the manifest.
    pub source: &'static str,
}

impl Entry {
    /// The file's name on a mirror (`<mirror>/<file_name>`): the URL's last part, or for
    /// timm's `model.safetensors` the model's name.
    pub fn file_name(&self) -> &'static str {
        match self.net {
            Net::Backbone(Backbone::MobilenetV1) => {
                "mobilenetv1_100.ra4_e3600_r224_in1k.safetensors"
            }
            Net::Pnet => "mtcnn_pnet.pt",
            Net::Rnet => "mtcnn_rnet.pt",
            Net::Onet => "mtcnn_onet.pt",
            Net::Backbone(_) => self.url.rsplit('/').next().unwrap_or(self.url),
        }
    }
}

/// Every entry, the paper's backbones first.
pub const CATALOG: [Entry; 8] = [
    Entry {
        name: "densenet121",
        net: Net::Backbone(Backbone::Densenet121),
        url: "https://download.pytorch.org/models/densenet121-a639ec97.pth",
        pin: Pin::Prefix("a639ec97"),
        source: "torchvision DenseNet121_Weights.IMAGENET1K_V1",
    },
    Entry {
        name: "densenet201",
        net: Net::Backbone(Backbone::Densenet201),
        url: "https://download.pytorch.org/models/densenet201-c1103571.pth",
        pin: Pin::Prefix("c1103571"),
        source: "torchvision DenseNet201_Weights.IMAGENET1K_V1",
    },
    Entry {
        name: "mobilenet_v1",
        net: Net::Backbone(Backbone::MobilenetV1),
        url: "https://huggingface.co/timm/mobilenetv1_100.ra4_e3600_r224_in1k/resolve/main/model.safetensors",
        pin: Pin::Unpinned,
        source: "timm mobilenetv1_100.ra4_e3600_r224_in1k",
    },
    Entry {
        name: "mobilenet_v2",
        net: Net::Backbone(Backbone::MobilenetV2),
        url: "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
        pin: Pin::Sha256("b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"),
        source: "torchvision MobileNet_V2_Weights.IMAGENET1K_V1",
    },
    Entry {
        name: "vgg19",
        net: Net::Backbone(Backbone::Vgg19),
        url: "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
        pin: Pin::Prefix("dcbb9e9d"),
        source: "torchvision VGG19_Weights.IMAGENET1K_V1",
    },
    Entry {
        name: "mtcnn_pnet",
        net: Net::Pnet,
        url: "https://github.com/timesler/facenet-pytorch/raw/v2.6.0/data/pnet.pt",
        pin: Pin::Sha256("a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f"),
        source: "facenet-pytorch 2.6.0 MTCNN P-net",
    },
    Entry {
        name: "mtcnn_rnet",
        net: Net::Rnet,
        url: "https://github.com/timesler/facenet-pytorch/raw/v2.6.0/data/rnet.pt",
        pin: Pin::Sha256("bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86"),
        source: "facenet-pytorch 2.6.0 MTCNN R-net",
    },
    Entry {
        name: "mtcnn_onet",
        net: Net::Onet,
        url: "https://github.com/timesler/facenet-pytorch/raw/v2.6.0/data/onet.pt",
        pin: Pin::Sha256("165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d"),
        source: "facenet-pytorch 2.6.0 MTCNN O-net",
    },
];

/// The entry named `name`, or an error listing the catalog.
pub fn lookup(name: &str) -> Result<&'static Entry, WeightsError> {
    CATALOG
        .iter()
        .find(|e| e.name == name)
        .ok_or_else(|| WeightsError::UnknownName {
            name: name.into(),
            known: CATALOG.map(|e| e.name).join(", "),
        })
}

/// Whether `sha256` (hex) satisfies `pin`.
pub fn satisfies(pin: Pin, sha256: &str) -> bool {
    match pin {
        Pin::Sha256(h) => h.eq_ignore_ascii_case(sha256),
        Pin::Prefix(p) => sha256
            .to_ascii_lowercase()
            .starts_with(&p.to_ascii_lowercase()),
        Pin::Unpinned => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_job_weight_name_is_in_the_catalog_and_names_are_unique() {
        for n in ausweep_proto::job::all_weight_names() {
            assert!(lookup(n).is_ok(), "{n} missing from the catalog");
        }
        let mut names: Vec<_> = CATALOG.iter().map(|e| e.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), CATALOG.len());
        let mut files: Vec<_> = CATALOG.iter().map(|e| e.file_name()).collect();
        files.sort();
        files.dedup();
        assert_eq!(files.len(), CATALOG.len(), "mirror file names collide");
    }

    #[test]
    fn torchvision_pins_match_their_file_names_and_pins_are_checked() {
        for e in CATALOG.iter() {
            if let Pin::Prefix(p) = e.pin {
                assert!(e.file_name().contains(&format!("-{p}.")), "{}", e.name);
            }
        }
        let full = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889";
        assert!(satisfies(lookup("mobilenet_v2").unwrap().pin, full));
        assert!(!satisfies(
            lookup("mobilenet_v2").unwrap().pin,
            &full.replace('b', "c")
        ));
        assert!(satisfies(Pin::Prefix("a639ec97"), "A639EC97ff"));
        assert!(!satisfies(Pin::Prefix("a639ec97"), "a639ec98ff"));
        let e = lookup("resnet50").unwrap_err().to_string();
        assert!(e.contains("resnet50") && e.contains("densenet121"), "{e}");
    }
}
