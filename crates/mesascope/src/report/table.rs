//! Tables of audits (a sweep's rows, `audit-many`'s verdicts): an audit's figures as columns,
//! and the CSV layout they are written in.

use crate::error::Result;
use mesascope_core::audit::AuditReport;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An outcome's rate on one distribution of an audit, with its 95% interval: the column
/// `DIST/OUTCOME` (and `..._lo`, `..._hi`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    pub column: String,
    pub rate: f64,
    pub lo: f64,
    pub hi: f64,
}

/// An audit's figures as the tables show them: the verdict, the proxy it names, its label
/// and exit code, and the rates, read from its JSON as every reader of `audit.json` reads them.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditFigures {
    pub kind: String,
    pub proxy: Option<String>,
    pub label: String,
    pub exit_code: i64,
    pub rates: Vec<Rate>,
}

impl Rate {
    /// The rate's three columns: `DIST/OUTCOME`, `..._lo`, `..._hi`.
    pub fn columns(&self) -> [(String, Value); 3] {
        [
            (self.column.clone(), self.rate.into()),
            (format!("{}_lo", self.column), self.lo.into()),
            (format!("{}_hi", self.column), self.hi.into()),
        ]
    }
}

impl AuditFigures {
    pub fn of(report: &AuditReport) -> Result<AuditFigures> {
        let a = serde_json::to_value(report)?;
        let v = &a["verdict"];
        let str_of = |x: &Value| x.as_str().map(str::to_string);
        let mut rates = Vec::new();
        for d in a["distributions"].as_array().into_iter().flatten() {
            let dist = d["name"].as_str().unwrap_or_default();
            for o in d["outcomes"].as_array().into_iter().flatten() {
                let name = o["outcome"].as_str().unwrap_or_default();
                if name == "intended" || name.starts_with("proxy:") {
                    let f = |k: &str| o[k].as_f64().unwrap_or(f64::NAN);
                    rates.push(Rate {
                        column: format!("{dist}/{name}"),
                        rate: f("rate"),
                        lo: f("lo"),
                        hi: f("hi"),
                    });
                }
            }
        }
        Ok(AuditFigures {
            kind: str_of(&v["verdict"]["kind"]).unwrap_or_default(),
            proxy: str_of(&v["verdict"]["proxy"]),
            label: str_of(&v["label"]).unwrap_or_default(),
            exit_code: v["exit_code"].as_i64().unwrap_or(-1),
            rates,
        })
    }
}

/// Writes the table as CSV: a header of every column in the order first met, a row per trial,
/// empty where a row has no such column or no value.
pub fn table_csv(rows: &[Vec<(String, Value)>]) -> String {
    let mut header: Vec<&str> = Vec::new();
    for r in rows {
        for (k, _) in r {
            if !header.contains(&k.as_str()) {
                header.push(k);
            }
        }
    }
    let field = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    let mut out = header
        .iter()
        .map(|h| field(h))
        .collect::<Vec<_>>()
        .join(",");
    out.push('\n');
    for r in rows {
        let line: Vec<String> = header
            .iter()
            .map(|h| match r.iter().find(|(k, _)| k == h).map(|(_, v)| v) {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => field(s),
                Some(v) => field(&v.to_string()),
            })
            .collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}
