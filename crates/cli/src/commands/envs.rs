use crate::args::EnvsArgs;
use mesascope::envs::report;
use mesascope::fsio::json_bytes;

pub fn run(a: &EnvsArgs) -> mesascope::Result<String> {
    let r = report(&a.knobs.knobs)?;
    if a.json {
        Ok(String::from_utf8_lossy(&json_bytes(&r)?).into_owned())
    } else {
        Ok(mesascope::report::envs::text(&r))
    }
}
