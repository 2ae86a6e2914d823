//! Validating payloads against the OpenAPI documents in `../shared/specs`.
//!
//! - [`specs_dir`] finds the documents (or tells a test to skip, or fails loudly in CI).
//! - [`SpecValidator`] loads one document (YAML or JSON, OpenAPI 3.0 or 3.1) and validates a
//!   `serde_json::Value` against a component schema ([`SpecValidator::validate`]) or against an
//!   operation's JSON request body ([`SpecValidator::validate_request`]). The whole document is
//!   the root resource, so every `$ref` in it resolves.
//! - Known defects of a document are fixed with [`SpecValidator::patch_schema`] (or its narrow
//!   form [`SpecValidator::retarget_refs`]), one named component schema at a time, so a test
//!   states exactly which schema it patches; nothing else is loosened.
//! - [`meta_webhook_validator`] is Meta's document with the webhook patch of
//!   `shared/README.md` applied.
//!
//! How OpenAPI keywords are read: `example`/`examples`/`discriminator`/`xml`/`externalDocs` are
//! annotations and are dropped from schema objects; `nullable: true` adds `"null"` to `type`;
//! in OpenAPI 3.0 documents boolean `exclusiveMinimum`/`exclusiveMaximum` take the numeric form
//! and `$ref` siblings are ignored, as 3.0 specifies. `format` is an annotation (OpenAPI 3.1 and
//! JSON Schema 2020-12 default): Meta's own examples break `format: uri` (`"meta.com"`), so
//! formats are not asserted.

pub mod generate;
mod meta;
mod meta_send;
mod normalise;
pub mod query;
mod report;

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use jsonschema::{Draft, Registry, Validator};
use serde_json::{json, Value};

pub use meta::{
    meta_webhook_validator, patch_meta_webhooks, MetaWebhookPatch, META_SPEC, META_WEBHOOK_PATCHES,
};
pub use meta_send::*;

use normalise::Dialect;

/// Environment variable naming the directory that holds `meta/` and `hubspot/`.
pub const SPECS_DIR_ENV: &str = "WACRM_SPECS_DIR";

/// The directory with the shared OpenAPI documents, or `None` when a test should skip.
///
/// Looks at `$WACRM_SPECS_DIR` first, then at `<workspace root>/../shared/specs`.
///
/// When `None` is returned, a "skipping: specs not found" line has been printed to stderr; the
/// caller just returns:
///
/// ```no_run
/// let Some(specs) = wacrm_testkit::openapi::specs_dir() else { return };
/// # let _ = specs;
/// ```
///
/// # Panics
///
/// When `WACRM_SPECS_DIR` is set but is not a directory, and when `CI` is set (to anything but
/// `""`, `0` or `false`) and no specs directory exists: in CI these tests must run, never skip
/// (unless `WACRM_SPECS_OPTIONAL` is set, for CI services that have no copy of the specs).
#[must_use]
#[track_caller]
pub fn specs_dir() -> Option<PathBuf> {
    let explicit = std::env::var_os(SPECS_DIR_ENV).filter(|v| !v.is_empty());
    // WACRM_SPECS_OPTIONAL: a CI that has no copy of the specs (a public fork's) may skip.
    let ci = std::env::var("CI")
        .map(|v| !matches!(v.trim(), "" | "0" | "false"))
        .unwrap_or(false)
        && std::env::var_os("WACRM_SPECS_OPTIONAL").is_none();
    match resolve_specs_dir(explicit, ci, &default_specs_dir()) {
        Ok(Some(dir)) => Some(dir),
        Ok(None) => {
            eprintln!(
                "skipping: specs not found (set {SPECS_DIR_ENV}, or put them at {})",
                default_specs_dir().display()
            );
            None
        }
        Err(message) => panic!("{message}"),
    }
}

/// The path of one document under [`specs_dir`], e.g. `meta/business-messaging-api_v23.0.yaml`;
/// `None` (after the skip message) when the specs are absent outside CI.
///
/// # Panics
///
/// As [`specs_dir`]; and when the directory exists but the file does not.
#[must_use]
#[track_caller]
pub fn spec_path(relative: &str) -> Option<PathBuf> {
    let path = specs_dir()?.join(relative);
    assert!(
        path.is_file(),
        "spec document {} not found in the specs directory",
        path.display()
    );
    Some(path)
}

/// `<workspace root>/../shared/specs`, from this crate's manifest directory.
fn default_specs_dir() -> PathBuf {
    // crates/wacrm-testkit -> crates -> workspace root -> its parent
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("..")
        .join("..")
        .join("shared")
        .join("specs")
}

/// The decision behind [`specs_dir`], free of the process environment so it can be tested.
fn resolve_specs_dir(
    explicit: Option<OsString>,
    ci: bool,
    default: &Path,
) -> Result<Option<PathBuf>, String> {
    if let Some(dir) = explicit {
        let dir = PathBuf::from(dir);
        return if dir.is_dir() {
            Ok(Some(dir))
        } else {
            Err(format!(
                "{SPECS_DIR_ENV} is set to {} but that is not a directory",
                dir.display()
            ))
        };
    }
    if default.is_dir() {
        return Ok(Some(default.to_path_buf()));
    }
    if ci {
        return Err(format!(
            "CI is set but the OpenAPI specs are missing: {SPECS_DIR_ENV} is unset and {} does \
             not exist; spec conformance tests must run in CI",
            default.display()
        ));
    }
    Ok(None)
}

/// Why a document could not be loaded, patched or compiled.
#[derive(Debug)]
pub enum SpecError {
    /// The file could not be read.
    Io {
        /// The document's path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not valid YAML/JSON or not an OpenAPI 3.0/3.1 document.
    Parse {
        /// The document's path.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A `#/components/schemas/<name>` the caller named does not exist.
    UnknownSchema(String),
    /// A patch did not find the defect it is meant to fix (the document may have been fixed:
    /// review and drop the patch).
    PatchDidNotApply {
        /// The schema that was to be patched.
        schema: String,
        /// What the patch looked for.
        expected: String,
    },
    /// `paths[path][method]` has no `requestBody.content["application/json"].schema`.
    NoRequestSchema {
        /// The path template, e.g. `/crm/v3/objects/contacts`.
        path: String,
        /// The HTTP method, lower case.
        method: String,
        /// What is missing.
        message: String,
    },
    /// `jsonschema` refused the document or a schema in it.
    Compile(String),
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, source } => write!(f, "reading {}: {source}", path.display()),
            Self::Parse { path, message } => write!(f, "parsing {}: {message}", path.display()),
            Self::UnknownSchema(name) => write!(f, "no schema #/components/schemas/{name}"),
            Self::PatchDidNotApply { schema, expected } => write!(
                f,
                "patch of #/components/schemas/{schema} did not apply: {expected} not found \
                 (was the document fixed? then drop the patch)"
            ),
            Self::NoRequestSchema {
                path,
                method,
                message,
            } => write!(f, "{} {path}: {message}", method.to_uppercase()),
            Self::Compile(message) => write!(f, "compiling schema: {message}"),
        }
    }
}

impl std::error::Error for SpecError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// One OpenAPI document, ready to validate payloads against its schemas.
///
/// Compiled validators are cached per schema location; patching clears the cache.
pub struct SpecValidator {
    source: PathBuf,
    base_uri: String,
    dialect: Dialect,
    document: Value,
    registry: Registry<'static>,
    patched: Vec<String>,
    cache: Mutex<HashMap<String, Arc<Validator>>>,
}

impl fmt::Debug for SpecValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpecValidator")
            .field("source", &self.source)
            .field("dialect", &self.dialect)
            .field("patched", &self.patched)
            .finish_non_exhaustive()
    }
}

impl SpecValidator {
    /// Loads an OpenAPI 3.0 or 3.1 document, YAML (`.yaml`/`.yml`) or JSON (anything else).
    ///
    /// # Errors
    ///
    /// When the file cannot be read or parsed, is not OpenAPI 3.0/3.1, or `jsonschema` rejects it.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, SpecError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let parse_error = |message: String| SpecError::Parse {
            path: path.to_path_buf(),
            message,
        };
        let is_yaml = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        );
        let document = if is_yaml {
            let mut yaml: serde_yaml_ng::Value =
                serde_yaml_ng::from_str(&text).map_err(|e| parse_error(e.to_string()))?;
            yaml.apply_merge().map_err(|e| parse_error(e.to_string()))?;
            normalise::yaml_to_json(yaml).map_err(parse_error)?
        } else {
            serde_json::from_str(&text).map_err(|e| parse_error(e.to_string()))?
        };
        let name = path
            .file_name()
            .map_or_else(|| "spec".to_owned(), |n| n.to_string_lossy().into_owned());
        Self::from_document(document, &name).map_err(|e| match e {
            SpecError::Parse { message, .. } => parse_error(message),
            other => other,
        })
    }

    /// Builds a validator from an already parsed OpenAPI document; `name` identifies it in the
    /// base URI and in messages.
    ///
    /// # Errors
    ///
    /// When the document is not OpenAPI 3.0/3.1 or `jsonschema` rejects it.
    pub fn from_document(mut document: Value, name: &str) -> Result<Self, SpecError> {
        let dialect = Dialect::of(&document).map_err(|message| SpecError::Parse {
            path: PathBuf::from(name),
            message,
        })?;
        normalise::normalise_document(&mut document, dialect);
        let encoded: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-._".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let base_uri = format!("urn:wacrm-spec:{encoded}");
        let registry = build_registry(&base_uri, &document)?;
        Ok(Self {
            source: PathBuf::from(name),
            base_uri,
            dialect,
            document,
            registry,
            patched: Vec::new(),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The document as validated: schema objects normalised, patches applied.
    #[must_use]
    pub fn document(&self) -> &Value {
        &self.document
    }

    /// `#/components/schemas/<name>` as validated (normalised, patched), if it exists.
    #[must_use]
    pub fn schema(&self, name: &str) -> Option<&Value> {
        self.document
            .pointer(&format!("/components/schemas/{}", escape_pointer(name)))
    }

    /// Names of the component schemas replaced or added by patches so far, in order; an
    /// operation's request schema replaced by [`SpecValidator::patch_request_schema`] is named
    /// `"<METHOD> <path template> request"`.
    #[must_use]
    pub fn patched_schemas(&self) -> &[String] {
        &self.patched
    }

    /// Replaces (or adds) `#/components/schemas/<name>` with `schema`.
    ///
    /// This is the only way to depart from the document: one named schema at a time, so the
    /// test that calls it states which known defect it fixes. The new schema is read with the
    /// document's OpenAPI dialect, and its `$ref`s resolve against the document.
    ///
    /// # Errors
    ///
    /// When `jsonschema` rejects the patched document.
    pub fn patch_schema(&mut self, name: &str, mut schema: Value) -> Result<(), SpecError> {
        normalise::normalise_schema(&mut schema, self.dialect);
        let components = self
            .document
            .as_object_mut()
            .ok_or_else(|| SpecError::Compile("document is not an object".to_owned()))?
            .entry("components")
            .or_insert_with(|| json!({}));
        let schemas = components
            .as_object_mut()
            .ok_or_else(|| SpecError::Compile("`components` is not an object".to_owned()))?
            .entry("schemas")
            .or_insert_with(|| json!({}));
        schemas
            .as_object_mut()
            .ok_or_else(|| SpecError::Compile("`components.schemas` is not an object".to_owned()))?
            .insert(name.to_owned(), schema);
        self.registry = build_registry(&self.base_uri, &self.document)?;
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        if !self.patched.iter().any(|p| p == name) {
            self.patched.push(name.to_owned());
        }
        Ok(())
    }

    /// Replaces the JSON request schema of one operation,
    /// `paths[path_template][method].requestBody.content["application/json"].schema` (a `$ref`
    /// to `#/components/requestBodies` followed, so every operation sharing that request body
    /// sees the patch).
    ///
    /// [`SpecValidator::patch_schema`]'s counterpart for documents that inline their request
    /// schemas instead of naming them (Pipedrive's): one named operation at a time, so the caller
    /// states which known defect it fixes; nothing else is loosened. Read the current schema
    /// with [`SpecValidator::request_schema`], check that the defect is still there (fail with
    /// [`SpecError::PatchDidNotApply`] otherwise), and pass the fixed copy. The new schema is
    /// read with the document's OpenAPI dialect.
    ///
    /// # Errors
    ///
    /// [`SpecError::NoRequestSchema`] when the operation has no JSON request schema;
    /// [`SpecError::Compile`] when `jsonschema` rejects the patched document.
    pub fn patch_request_schema(
        &mut self,
        path_template: &str,
        method: &str,
        mut schema: Value,
    ) -> Result<(), SpecError> {
        let pointer = self.request_schema_pointer(path_template, method)?;
        normalise::normalise_schema(&mut schema, self.dialect);
        match self.document.pointer_mut(&pointer) {
            Some(slot) => *slot = schema,
            None => {
                return Err(self.no_request_schema(
                    path_template,
                    method,
                    "request body has no application/json schema",
                ))
            }
        }
        self.registry = build_registry(&self.base_uri, &self.document)?;
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        let name = format!("{} {path_template} request", method.to_ascii_uppercase());
        if !self.patched.contains(&name) {
            self.patched.push(name);
        }
        Ok(())
    }

    /// An operation's JSON request schema as validated (normalised, patched).
    ///
    /// # Errors
    ///
    /// As [`SpecValidator::request_schema_pointer`].
    pub fn request_schema(&self, path_template: &str, method: &str) -> Result<&Value, SpecError> {
        let pointer = self.request_schema_pointer(path_template, method)?;
        self.document
            .pointer(&pointer)
            .ok_or_else(|| self.no_request_schema(path_template, method, "no request schema"))
    }

    /// Patches `#/components/schemas/<schema>` so that each `$ref` to
    /// `#/components/schemas/<from>` inside it points to `#/components/schemas/<to>` instead;
    /// returns how many were changed. Everything else in the schema stays as it is.
    ///
    /// # Errors
    ///
    /// [`SpecError::UnknownSchema`] when `schema` or `to` does not exist;
    /// [`SpecError::PatchDidNotApply`] when `schema` has no `$ref` to `from` (the defect is gone:
    /// a patch must never apply silently to a document that no longer needs it).
    pub fn retarget_refs(
        &mut self,
        schema: &str,
        from: &str,
        to: &str,
    ) -> Result<usize, SpecError> {
        if self.schema(to).is_none() {
            return Err(SpecError::UnknownSchema(to.to_owned()));
        }
        let mut patched = self
            .schema(schema)
            .cloned()
            .ok_or_else(|| SpecError::UnknownSchema(schema.to_owned()))?;
        let from_ref = format!("#/components/schemas/{}", escape_pointer(from));
        let to_ref = format!("#/components/schemas/{}", escape_pointer(to));
        let changed = replace_refs(&mut patched, &from_ref, &to_ref);
        if changed == 0 {
            return Err(SpecError::PatchDidNotApply {
                schema: schema.to_owned(),
                expected: format!("a $ref to {from_ref}"),
            });
        }
        self.patch_schema(schema, patched)?;
        Ok(changed)
    }

    /// Validates `instance` against `#/components/schemas/<schema_name>`.
    ///
    /// # Errors
    ///
    /// One line per failing keyword, `<instance path>: <keyword>: <message>`; a failed
    /// `oneOf`/`anyOf` is reported through the errors of its closest alternative, marked
    /// `(via oneOf[i] at <path>)`. An unknown schema name is reported the same way.
    pub fn validate(&self, schema_name: &str, instance: &Value) -> Result<(), Vec<String>> {
        if self.schema(schema_name).is_none() {
            return Err(vec![format!(
                "(root): $ref: no schema #/components/schemas/{schema_name} in {}",
                self.source.display()
            )]);
        }
        let pointer = format!("/components/schemas/{}", escape_pointer(schema_name));
        self.validate_at(&pointer, instance)
    }

    /// Validates a JSON request body against the schema of
    /// `paths[path_template][method].requestBody.content["application/json"].schema`
    /// (following a `$ref` to `#/components/requestBodies`).
    ///
    /// `method` is case-insensitive; `path_template` is as written in the document, e.g.
    /// `/{Version}/{Phone-Number-ID}/messages` or `/crm/v3/objects/contacts/batch/create`.
    ///
    /// # Errors
    ///
    /// As [`SpecValidator::validate`]; a missing operation or request schema is one error line.
    pub fn validate_request(
        &self,
        path_template: &str,
        method: &str,
        body: &Value,
    ) -> Result<(), Vec<String>> {
        let pointer = self
            .request_schema_pointer(path_template, method)
            .map_err(|e| vec![format!("(root): $ref: {e}")])?;
        self.validate_at(&pointer, body)
    }

    /// The JSON pointer (into [`SpecValidator::document`]) of an operation's JSON request schema.
    ///
    /// # Errors
    ///
    /// [`SpecError::NoRequestSchema`] when the operation, its request body or its
    /// `application/json` schema does not exist.
    pub fn request_schema_pointer(
        &self,
        path_template: &str,
        method: &str,
    ) -> Result<String, SpecError> {
        let (body_pointer, _) = self.request_body(path_template, method)?;
        let schema_pointer = format!("{body_pointer}/content/application~1json/schema");
        if self.document.pointer(&schema_pointer).is_none() {
            return Err(self.no_request_schema(
                path_template,
                method,
                "request body has no application/json schema",
            ));
        }
        Ok(schema_pointer)
    }

    /// The named JSON examples of an operation's request body, as written in the document
    /// (`examples` entries, following `$ref`s to `#/components/examples`, or one `example`
    /// named `example`). Useful to check that a patch makes the document's own examples valid.
    ///
    /// # Errors
    ///
    /// [`SpecError::NoRequestSchema`] when the operation or its request body does not exist.
    pub fn request_examples(
        &self,
        path_template: &str,
        method: &str,
    ) -> Result<Vec<(String, Value)>, SpecError> {
        let (_, body) = self.request_body(path_template, method)?;
        let Some(media) = body.pointer("/content/application~1json") else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        if let Some(example) = media.get("example") {
            out.push(("example".to_owned(), example.clone()));
        }
        if let Some(examples) = media.get("examples").and_then(Value::as_object) {
            for (name, example) in examples {
                let example = self.follow_ref(example);
                if let Some(value) = example.get("value") {
                    out.push((name.clone(), value.clone()));
                }
            }
        }
        Ok(out)
    }

    /// `(JSON pointer, object)` of an operation's request body, `$ref`s followed.
    fn request_body(
        &self,
        path_template: &str,
        method: &str,
    ) -> Result<(String, &Value), SpecError> {
        let method = method.to_ascii_lowercase();
        let operation_pointer = format!(
            "/paths/{}/{}",
            escape_pointer(path_template),
            escape_pointer(&method)
        );
        if self.document.pointer(&operation_pointer).is_none() {
            return Err(self.no_request_schema(path_template, &method, "no such operation"));
        }
        let mut pointer = format!("{operation_pointer}/requestBody");
        for _ in 0..8 {
            let Some(body) = self.document.pointer(&pointer) else {
                return Err(self.no_request_schema(path_template, &method, "no request body"));
            };
            match body.get("$ref").and_then(Value::as_str) {
                Some(reference) => match reference.strip_prefix('#') {
                    Some(target) => pointer = target.to_owned(),
                    None => {
                        return Err(self.no_request_schema(
                            path_template,
                            &method,
                            "request body is an external $ref",
                        ))
                    }
                },
                None => return Ok((pointer, body)),
            }
        }
        Err(self.no_request_schema(path_template, &method, "request body $ref loop"))
    }

    fn no_request_schema(&self, path: &str, method: &str, message: &str) -> SpecError {
        SpecError::NoRequestSchema {
            path: path.to_owned(),
            method: method.to_ascii_lowercase(),
            message: format!("{message} in {}", self.source.display()),
        }
    }

    /// Follows local `$ref`s of a non-schema object (an example, a request body).
    fn follow_ref<'a>(&'a self, mut value: &'a Value) -> &'a Value {
        for _ in 0..8 {
            match value
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix('#'))
                .and_then(|p| self.document.pointer(p))
            {
                Some(target) => value = target,
                None => break,
            }
        }
        value
    }

    /// Validates against the schema at a JSON pointer into the document.
    fn validate_at(&self, pointer: &str, instance: &Value) -> Result<(), Vec<String>> {
        let validator = self
            .validator_at(pointer)
            .map_err(|e| vec![format!("(root): $ref: {e}")])?;
        let mut errors = Vec::new();
        for error in validator.iter_errors(instance) {
            report::render(&error, "", &mut errors);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The compiled validator for the schema at `pointer`, from the cache or freshly built.
    fn validator_at(&self, pointer: &str) -> Result<Arc<Validator>, SpecError> {
        if let Some(found) = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(pointer)
        {
            return Ok(Arc::clone(found));
        }
        let wrapper = json!({ "$ref": format!("{}#{}", self.base_uri, encode_fragment(pointer)) });
        let validator = jsonschema::options()
            .with_draft(Draft::Draft202012)
            .with_registry(&self.registry)
            .build(&wrapper)
            .map_err(|e| SpecError::Compile(format!("{pointer}: {e}")))?;
        let validator = Arc::new(validator);
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(pointer.to_owned(), Arc::clone(&validator));
        Ok(validator)
    }
}

/// Registers the whole (normalised) document as one JSON Schema 2020-12 resource.
fn build_registry(base_uri: &str, document: &Value) -> Result<Registry<'static>, SpecError> {
    Registry::new()
        .draft(Draft::Draft202012)
        .add(base_uri, document.clone())
        .and_then(|builder| builder.prepare())
        .map_err(|e| SpecError::Compile(e.to_string()))
}

/// Escapes one JSON pointer reference token (RFC 6901).
fn escape_pointer(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Percent-encodes a JSON pointer for use as a URI fragment (RFC 6901 §6): path templates
/// carry `{`/`}`, which a URI may not.
fn encode_fragment(pointer: &str) -> String {
    let mut out = String::with_capacity(pointer.len());
    for byte in pointer.bytes() {
        let c = char::from(byte);
        if c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@/?".contains(c) {
            out.push(c);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Replaces every `"$ref": from` inside `value` by `to`; returns the count.
fn replace_refs(value: &mut Value, from: &str, to: &str) -> usize {
    match value {
        Value::Object(map) => {
            let mut count = 0;
            for (key, child) in map.iter_mut() {
                if key == "$ref" && child.as_str() == Some(from) {
                    *child = Value::from(to);
                    count += 1;
                } else {
                    count += replace_refs(child, from, to);
                }
            }
            count
        }
        Value::Array(items) => items.iter_mut().map(|i| replace_refs(i, from, to)).sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests;
