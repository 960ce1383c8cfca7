//! Content negotiation: which representation the client accepts (object, Table, metadata
//! only) and how its body is encoded.

use crate::error::ApiError;

/// What `Accept` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Json,
    Yaml,
    /// meta.k8s.io/v1 Table.
    Table,
    /// meta.k8s.io/v1 PartialObjectMetadata(List).
    Metadata,
}

fn params(media: &str) -> (String, Vec<(String, String)>) {
    let mut parts = media.split(';').map(str::trim);
    let ty = parts.next().unwrap_or("").to_ascii_lowercase();
    let ps = parts
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    (ty, ps)
}

/// The first representation of `accept` this server produces.
pub fn output(accept: Option<&str>) -> Result<Output, ApiError> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Ok(Output::Json);
    };
    for media in accept.split(',') {
        let (ty, ps) = params(media);
        let get = |k: &str| ps.iter().find(|(pk, _)| pk == k).map(|(_, v)| v.as_str());
        let json_like = matches!(ty.as_str(), "application/json" | "*/*" | "application/*");
        match get("as") {
            Some("Table") if json_like && get("g") == Some("meta.k8s.io") => {
                return Ok(Output::Table)
            }
            Some("PartialObjectMetadata" | "PartialObjectMetadataList")
                if json_like && get("g") == Some("meta.k8s.io") =>
            {
                return Ok(Output::Metadata)
            }
            Some(_) => continue,
            None => {}
        }
        if json_like {
            return Ok(Output::Json);
        }
        if ty == "application/yaml" {
            return Ok(Output::Yaml);
        }
    }
    Err(ApiError::not_acceptable(
        "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf",
    ))
}

/// How a request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyType {
    Json,
    Yaml,
    Protobuf,
    JsonPatch,
    MergePatch,
    StrategicMergePatch,
    ApplyPatch,
}

/// The body encoding from `Content-Type` (a missing type is JSON, as curl users expect).
pub fn body_type(content_type: Option<&str>) -> Result<BodyType, ApiError> {
    let raw = content_type.unwrap_or("application/json");
    let (ty, _) = params(raw);
    Ok(match ty.as_str() {
        "" | "application/json" => BodyType::Json,
        "application/yaml" | "application/x-yaml" | "text/yaml" => BodyType::Yaml,
        "application/vnd.kubernetes.protobuf" => BodyType::Protobuf,
        "application/json-patch+json" => BodyType::JsonPatch,
        "application/merge-patch+json" => BodyType::MergePatch,
        "application/strategic-merge-patch+json" => BodyType::StrategicMergePatch,
        "application/apply-patch+yaml" => BodyType::ApplyPatch,
        _ => return Err(ApiError::unsupported_media_type(raw)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_get_asks_for_a_table_first() {
        let a = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(output(Some(a)), Ok(Output::Table));
    }

    #[test]
    fn protobuf_first_falls_back_to_json() {
        let a = "application/vnd.kubernetes.protobuf, */*";
        assert_eq!(output(Some(a)), Ok(Output::Json));
        assert!(output(Some("application/vnd.kubernetes.protobuf")).is_err());
    }

    #[test]
    fn patch_types_come_from_the_content_type() {
        assert_eq!(
            body_type(Some("application/strategic-merge-patch+json")),
            Ok(BodyType::StrategicMergePatch)
        );
        assert_eq!(body_type(Some("text/html")).map_err(|e| e.code), Err(415));
    }
}
