//! Turning a quality-score prediction into a category, the model's own top
//! risk factors, and recommendations tied to those factors.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::predict::Prediction;

/// How many of the most negative contributions are reported.
pub const MAX_RISK_FACTORS: usize = 3;

/// A feature that lowers this sample's predicted score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskFactor {
    pub feature: String,
    pub value: Value,
    /// The feature's contribution in score points (negative).
    pub impact: f64,
    pub description: String,
}

/// A prediction read as a sample-quality verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assessment {
    /// Predicted quality score, clamped to 0..100.
    pub score: f64,
    pub category: String,
    /// Absent when the prediction was not explained: risk factors are read
    /// off the contributions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk_factors: Option<Vec<RiskFactor>>,
    /// For the risk factors, in their order; advice shared by related
    /// features appears once. Absent with the risk factors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommendations: Option<Vec<String>>,
}

/// Quality bands: excellent >= 85, good >= 70, acceptable >= 50, else poor.
/// The bands follow common biobank acceptance practice: "acceptable"
/// samples are usable for robust assays, "poor" ones should be re-collected
/// or used only with caution.
pub fn quality_category(score: f64) -> &'static str {
    if score >= 85.0 {
        "excellent"
    } else if score >= 70.0 {
        "good"
    } else if score >= 50.0 {
        "acceptable"
    } else {
        "poor"
    }
}

fn recommendation(feature: &str) -> String {
    let specific = match feature {
        "freeze_thaw_cycles" => {
            "Aliquot samples on receipt so each analysis thaws a fresh aliquot; avoid further freeze-thaw cycles."
        }
        "temperature_deviation" | "temperature_max_excursion" | "temperature_variability" => {
            "Review the storage unit's temperature log and alarm thresholds; move samples to a unit that holds its set point."
        }
        "processing_delay_hours" | "processing_delay_category" => {
            "Process samples within 2 hours of collection, or stabilise them (cold chain, preservative tubes) until processing."
        }
        "sample_age_days" => {
            "Prioritise this sample for analysis, or re-collect if the study allows; quality declines with storage time."
        }
        "purity_260_280" | "purity_deviation" => {
            "Re-purify the extract (column clean-up) to remove protein or phenol contamination, then re-measure A260/280."
        }
        "purity_260_230" => {
            "Remove salt or guanidine carry-over with an extra wash or ethanol precipitation, then re-measure A260/230."
        }
        "rin" => {
            "RNA integrity is low: use RNase-free handling and stabilisation reagents, and confirm RIN on a fresh aliquot."
        }
        "transport_time_hours" => {
            "Shorten transport time or ship on dry ice with a temperature logger."
        }
        "storage_utilization" => {
            "The storage location is nearly full; rebalance it to cut door-open time and temperature swings."
        }
        "total_yield_ug" | "volume_ml" | "concentration_ng_ul" => {
            "Yield is low: concentrate the sample or collect additional material before downstream assays."
        }
        "quality_risk_score" => {
            "Several handling risks combine for this sample; review its full chain-of-custody record."
        }
        _ => "",
    };
    if specific.is_empty() {
        format!("Review how '{feature}' was handled for this sample against the lab's SOP.")
    } else {
        specific.to_string()
    }
}

fn display_value(v: &Value) -> String {
    match v {
        Value::Null => "missing".to_string(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(x) if x.fract() != 0.0 => format!("{x:.2}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// Category, top risk factors (the features whose contributions lower the
/// predicted score most, as the model itself attributes them) and the
/// recommendations for those risk factors, each said once; the category
/// alone for an answer given without contributions.
pub fn assess(prediction: &Prediction) -> Assessment {
    let score = if prediction.value.is_finite() {
        prediction.value.clamp(0.0, 100.0)
    } else {
        0.0
    };
    let category = quality_category(score).to_string();
    if !prediction.explained() {
        return Assessment {
            score,
            category,
            risk_factors: None,
            recommendations: None,
        };
    }
    let mut negative: Vec<_> = prediction
        .contributions
        .iter()
        .filter(|c| c.contribution < 0.0)
        .collect();
    negative.sort_by(|a, b| a.contribution.total_cmp(&b.contribution));
    let risk_factors: Vec<RiskFactor> = negative
        .into_iter()
        .take(MAX_RISK_FACTORS)
        .map(|c| RiskFactor {
            feature: c.feature.clone(),
            value: c.value.clone(),
            impact: c.contribution,
            description: format!(
                "{} = {} lowers the predicted score by {:.1} points",
                c.feature,
                display_value(&c.value),
                -c.contribution
            ),
        })
        .collect();
    // Related features (say, two temperature figures) share advice; say it once.
    let mut recommendations: Vec<String> = Vec::new();
    for r in &risk_factors {
        let text = recommendation(&r.feature);
        if !recommendations.contains(&text) {
            recommendations.push(text);
        }
    }
    Assessment {
        score,
        category,
        risk_factors: Some(risk_factors),
        recommendations: Some(recommendations),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predict::Contribution;
    use serde_json::json;

    #[test]
    fn categories_at_the_boundaries() {
        assert_eq!(quality_category(85.0), "excellent");
        assert_eq!(quality_category(84.9), "good");
        assert_eq!(quality_category(70.0), "good");
        assert_eq!(quality_category(50.0), "acceptable");
        assert_eq!(quality_category(49.9), "poor");
    }

    #[test]
    fn risk_factors_are_the_most_negative_contributions() {
        let c = |feature: &str, contribution: f64| Contribution {
            feature: feature.into(),
            value: json!(3),
            contribution,
        };
        let prediction = Prediction {
            value: 61.0,
            label: None,
            probabilities: None,
            contributions: vec![
                c("rin", 5.0),
                c("freeze_thaw_cycles", -9.0),
                c("sample_type", -4.0),
                c("transport_time_hours", -0.5),
                c("temperature_deviation", -6.0),
            ],
            base_value: Some(70.0),
        };
        let a = assess(&prediction);
        assert_eq!(a.category, "acceptable");
        let (Some(risks), Some(advice)) = (&a.risk_factors, &a.recommendations) else {
            panic!("an explained prediction has risk factors: {a:?}");
        };
        let names: Vec<&str> = risks.iter().map(|r| r.feature.as_str()).collect();
        assert_eq!(
            names,
            vec!["freeze_thaw_cycles", "temperature_deviation", "sample_type"]
        );
        assert_eq!(advice.len(), 3);
        assert!(advice[0].contains("freeze-thaw"));
        assert!(advice[1].contains("temperature"));
        assert!(advice[2].contains("'sample_type'"));
        assert!(risks[0].description.contains("by 9.0 points"));

        // Without contributions there is nothing to read risks from: the
        // category alone, and no empty lists that would say "no risks".
        let plain = Prediction {
            contributions: Vec::new(),
            base_value: None,
            ..prediction
        };
        let a = assess(&plain);
        assert_eq!(a.category, "acceptable");
        assert_eq!((a.risk_factors, a.recommendations), (None, None));
        let json = serde_json::to_value(assess(&plain)).unwrap_or_default();
        assert!(json.get("risk_factors").is_none());
    }
}
