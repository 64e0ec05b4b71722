//! `#[derive(SyncItem)]`: the table definition of a tidesync sync table, read
//! from the serde struct that is its row, so an app states its schema once.
//!
//! Apps use it through the facade (`#[derive(tidesync::SyncItem)]`); the
//! generated code names the facade's paths (`::tidesync::…`), which
//! `#[tidesync(crate = "path")]` changes. This crate only reads the type's
//! syntax: it is not the engine and it does not check values at run time (the
//! local store does, against the definition generated here).
//!
//! What it reads:
//! - `#[tidesync(table = "TodoItem")]` on the struct names the table (default:
//!   the struct's name).
//! - Each named field is a column, named as serde names it (`#[serde(rename)]`,
//!   the container's `#[serde(rename_all)]`); fields serde skips are not columns.
//! - The column type comes from the field type: `String`/`str`/`char` → string,
//!   `bool` → bool, integer types → integer, `f32`/`f64` → real, chrono's
//!   `DateTime<_>` and time's `OffsetDateTime` (with a `serde(with)` that writes
//!   RFC 3339 or ISO 8601, as time's default is an array) → date-time,
//!   `Option<T>` → `T`'s type; any other type → JSON. `#[tidesync(ty = "…")]` on
//!   a field overrides it (`string`, `bool`, `integer`, `real`, `datetime`, `json`).
//! - The system properties (`id`, `createdAt`, `updatedAt`, `version`, `deleted`)
//!   are never declared columns. The struct must have an `id` field of type
//!   `String` or `Option<String>`.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::quote;
use syn::spanned::Spanned;
use syn::{
    Attribute, Data, DeriveInput, Expr, Fields, GenericArgument, LitStr, PathArguments, Type,
};

/// Derives `tidesync::SyncItem` for a struct with named fields; see the crate docs.
#[proc_macro_derive(SyncItem, attributes(tidesync))]
pub fn derive_sync_item(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as DeriveInput);
    expand(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// The names of the system properties, which every table has (compared as serde
/// would write them, ASCII case-insensitively, like the protocol does).
const SYSTEM: [&str; 5] = ["id", "createdAt", "updatedAt", "version", "deleted"];

/// A column type, as the engine's `ColumnType` variant it becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    String,
    Bool,
    Integer,
    Real,
    DateTime,
    Json,
}

impl Ty {
    fn variant(self) -> &'static str {
        match self {
            Ty::String => "String",
            Ty::Bool => "Bool",
            Ty::Integer => "Integer",
            Ty::Real => "Real",
            Ty::DateTime => "DateTime",
            Ty::Json => "Json",
        }
    }

    fn parse(name: &LitStr) -> syn::Result<Self> {
        Ok(match name.value().to_ascii_lowercase().as_str() {
            "string" => Ty::String,
            "bool" => Ty::Bool,
            "integer" => Ty::Integer,
            "real" => Ty::Real,
            "datetime" => Ty::DateTime,
            "json" => Ty::Json,
            _ => {
                return Err(syn::Error::new(
                    name.span(),
                    "unknown column type; expected one of string, bool, integer, real, datetime, json",
                ));
            }
        })
    }
}

fn expand(input: &DeriveInput) -> syn::Result<TokenStream2> {
    let (container, columns) = read(input)?;
    let ident = &input.ident;
    let krate = container.krate;
    let table = container
        .table
        .unwrap_or_else(|| LitStr::new(&ident.to_string(), ident.span()));
    let column_calls = columns.iter().map(|(name, ty)| {
        let variant = syn::Ident::new(ty.variant(), Span::call_site());
        quote! { .column(#name, #krate::ColumnType::#variant) }
    });
    Ok(quote! {
        #[automatically_derived]
        impl #krate::SyncItem for #ident {
            const TABLE: &'static str = #table;

            fn table_def() -> #krate::TableDef {
                #krate::TableDef::new(#table) #(#column_calls)*
            }
        }
    })
}

/// The struct's attributes and its declared columns (name as serde writes it, type).
fn read(input: &DeriveInput) -> syn::Result<(ContainerAttrs, Vec<(String, Ty)>)> {
    let container = ContainerAttrs::read(&input.attrs)?;
    let fields = match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(named) => &named.named,
            _ => {
                return Err(syn::Error::new(
                    input.ident.span(),
                    "SyncItem needs a struct with named fields (each field is a column)",
                ));
            }
        },
        _ => {
            return Err(syn::Error::new(
                input.ident.span(),
                "SyncItem needs a struct with named fields (each field is a column)",
            ));
        }
    };
    if !input.generics.params.is_empty() {
        return Err(syn::Error::new(
            input.generics.span(),
            "SyncItem cannot be derived for a generic struct: its table must be one",
        ));
    }

    let mut columns: Vec<(String, Ty)> = Vec::new();
    let mut has_id = false;
    for field in fields {
        let attrs = FieldAttrs::read(&field.attrs)?;
        if attrs.flatten {
            return Err(syn::Error::new(
                field.span(),
                "#[serde(flatten)] is not supported by SyncItem: declare the columns as fields",
            ));
        }
        if attrs.skip {
            continue;
        }
        let ident = field
            .ident
            .as_ref()
            .ok_or_else(|| syn::Error::new(field.span(), "a field without a name"))?;
        let rust_name = ident.to_string();
        let rust_name = rust_name.strip_prefix("r#").unwrap_or(&rust_name);
        let name = match attrs.rename {
            Some(name) => name,
            None => container.rename_all.apply(rust_name),
        };
        if name.eq_ignore_ascii_case("id") {
            if !is_string_id(&field.ty) {
                return Err(syn::Error::new(
                    field.ty.span(),
                    "the `id` field must be a `String` or an `Option<String>`",
                ));
            }
            has_id = true;
            continue;
        }
        if SYSTEM
            .iter()
            .any(|system| system.eq_ignore_ascii_case(&name))
        {
            continue;
        }
        let ty = match attrs.ty {
            Some(ty) => ty,
            None => column_type(&field.ty, attrs.with.as_deref())?,
        };
        if columns
            .iter()
            .any(|(other, _)| other.eq_ignore_ascii_case(&name))
        {
            return Err(syn::Error::new(
                field.span(),
                format!("two fields are both the column `{name}` (column names ignore case)"),
            ));
        }
        columns.push((name, ty));
    }
    if !has_id {
        return Err(syn::Error::new(
            input.ident.span(),
            "a SyncItem needs an `id` field (`Option<String>` to let the engine assign one on insert)",
        ));
    }

    Ok((container, columns))
}

/// What the derive reads from the struct's own attributes.
struct ContainerAttrs {
    table: Option<LitStr>,
    krate: syn::Path,
    rename_all: RenameRule,
}

impl ContainerAttrs {
    fn read(attrs: &[Attribute]) -> syn::Result<Self> {
        let mut out = Self {
            table: None,
            krate: syn::parse_quote!(::tidesync),
            rename_all: RenameRule::None,
        };
        for attr in attrs {
            if attr.path().is_ident("tidesync") {
                attr.parse_nested_meta(|meta| {
                    if meta.path.is_ident("table") {
                        let table: LitStr = meta.value()?.parse()?;
                        if table.value().is_empty() {
                            return Err(meta.error("the table name is empty"));
                        }
                        out.table = Some(table);
                        Ok(())
                    } else if meta.path.is_ident("crate") {
                        let path: LitStr = meta.value()?.parse()?;
                        out.krate = path.parse()?;
                        Ok(())
                    } else {
                        Err(meta.error("unknown tidesync attribute; expected `table` or `crate`"))
                    }
                })?;
            } else if attr.path().is_ident("serde") {
                attr.parse_nested_meta(|meta| {
                    if meta.path.is_ident("rename_all") {
                        if let Some(rule) = serialize_name(&meta)? {
                            out.rename_all = RenameRule::parse(&rule)?;
                        }
                    } else if meta.path.is_ident("transparent") {
                        return Err(meta.error(
                            "#[serde(transparent)] is not supported by SyncItem: a row is an object",
                        ));
                    } else {
                        skip_value(&meta)?;
                    }
                    Ok(())
                })?;
            }
        }
        Ok(out)
    }
}

/// What the derive reads from a field's attributes.
#[derive(Default)]
struct FieldAttrs {
    rename: Option<String>,
    skip: bool,
    flatten: bool,
    with: Option<String>,
    ty: Option<Ty>,
}

impl FieldAttrs {
    fn read(attrs: &[Attribute]) -> syn::Result<Self> {
        let mut out = Self::default();
        for attr in attrs {
            if attr.path().is_ident("tidesync") {
                attr.parse_nested_meta(|meta| {
                    if meta.path.is_ident("ty") {
                        out.ty = Some(Ty::parse(&meta.value()?.parse()?)?);
                        Ok(())
                    } else if meta.path.is_ident("skip") {
                        out.skip = true;
                        Ok(())
                    } else {
                        Err(meta.error("unknown tidesync field attribute; expected `ty` or `skip`"))
                    }
                })?;
            } else if attr.path().is_ident("serde") {
                attr.parse_nested_meta(|meta| {
                    let path = &meta.path;
                    if path.is_ident("rename") {
                        if let Some(name) = serialize_name(&meta)? {
                            out.rename = Some(name.value());
                        }
                    } else if path.is_ident("skip") || path.is_ident("skip_serializing") {
                        // Never written, so never a column the engine fills.
                        out.skip = true;
                    } else if path.is_ident("flatten") {
                        out.flatten = true;
                    } else if path.is_ident("with") || path.is_ident("serialize_with") {
                        let with: LitStr = meta.value()?.parse()?;
                        out.with = Some(with.value());
                    } else {
                        skip_value(&meta)?;
                    }
                    Ok(())
                })?;
            }
        }
        Ok(out)
    }
}

/// The serialize-side name of `rename = "x"` or `rename(serialize = "x", …)`
/// (None when only a deserialize name is given).
fn serialize_name(meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<Option<LitStr>> {
    if meta.input.peek(syn::Token![=]) {
        return Ok(Some(meta.value()?.parse()?));
    }
    let mut name = None;
    meta.parse_nested_meta(|inner| {
        let value: LitStr = inner.value()?.parse()?;
        if inner.path.is_ident("serialize") {
            name = Some(value);
        }
        Ok(())
    })?;
    Ok(name)
}

/// Consumes a serde attribute the derive does not read (`default`, `alias = "…"`,
/// `bound(…)`, …) so the rest of the list still parses.
fn skip_value(meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(syn::Token![=]) {
        let _: Expr = meta.value()?.parse()?;
    } else if meta.input.peek(syn::token::Paren) {
        let content;
        syn::parenthesized!(content in meta.input);
        let _: TokenStream2 = content.parse()?;
    }
    Ok(())
}

/// serde's `rename_all` rules, applied to a snake_case Rust field name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RenameRule {
    None,
    Lower,
    Upper,
    Pascal,
    Camel,
    Snake,
    ScreamingSnake,
    Kebab,
    ScreamingKebab,
}

impl RenameRule {
    fn parse(rule: &LitStr) -> syn::Result<Self> {
        Ok(match rule.value().as_str() {
            "lowercase" => Self::Lower,
            "UPPERCASE" => Self::Upper,
            "PascalCase" => Self::Pascal,
            "camelCase" => Self::Camel,
            "snake_case" => Self::Snake,
            "SCREAMING_SNAKE_CASE" => Self::ScreamingSnake,
            "kebab-case" => Self::Kebab,
            "SCREAMING-KEBAB-CASE" => Self::ScreamingKebab,
            _ => return Err(syn::Error::new(rule.span(), "unknown rename_all rule")),
        })
    }

    /// The name serde gives a field named `field` (Rust fields are snake_case).
    fn apply(self, field: &str) -> String {
        match self {
            Self::None | Self::Lower | Self::Snake => field.to_owned(),
            Self::Upper | Self::ScreamingSnake => field.to_ascii_uppercase(),
            Self::Kebab => field.replace('_', "-"),
            Self::ScreamingKebab => field.replace('_', "-").to_ascii_uppercase(),
            Self::Pascal | Self::Camel => {
                let mut out = String::with_capacity(field.len());
                let mut upper_next = self == Self::Pascal;
                for ch in field.chars() {
                    if ch == '_' {
                        upper_next = true;
                    } else if upper_next {
                        out.push(ch.to_ascii_uppercase());
                        upper_next = false;
                    } else {
                        out.push(ch);
                    }
                }
                out
            }
        }
    }
}

/// The last segment of a type path and its generic arguments, if the type is a path.
fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(path) if path.qself.is_none() => path.path.segments.last(),
        Type::Reference(reference) => last_segment(&reference.elem),
        Type::Group(group) => last_segment(&group.elem),
        Type::Paren(paren) => last_segment(&paren.elem),
        _ => None,
    }
}

/// The single type argument of `Option<T>` (or `Box<T>`), if `ty` is one.
fn wrapped<'a>(ty: &'a Type, wrapper: &str) -> Option<&'a Type> {
    let segment = last_segment(ty)?;
    if segment.ident != wrapper {
        return None;
    }
    match &segment.arguments {
        PathArguments::AngleBracketed(args) if args.args.len() == 1 => match args.args.first() {
            Some(GenericArgument::Type(inner)) => Some(inner),
            _ => None,
        },
        _ => None,
    }
}

fn is_string_id(ty: &Type) -> bool {
    let ty = wrapped(ty, "Option").unwrap_or(ty);
    last_segment(ty).is_some_and(|s| s.ident == "String" && s.arguments.is_empty())
}

/// The column type of a field type (`with` is the field's `serde(with)` module, if any).
fn column_type(ty: &Type, with: Option<&str>) -> syn::Result<Ty> {
    if let Some(inner) = wrapped(ty, "Option").or_else(|| wrapped(ty, "Box")) {
        return column_type(inner, with);
    }
    let Some(segment) = last_segment(ty) else {
        return Ok(Ty::Json);
    };
    let name = segment.ident.to_string();
    Ok(match name.as_str() {
        "String" | "str" | "char" => Ty::String,
        "bool" => Ty::Bool,
        "i8" | "i16" | "i32" | "i64" | "isize" | "u8" | "u16" | "u32" | "u64" | "usize" => {
            Ty::Integer
        }
        "f32" | "f64" => Ty::Real,
        "DateTime" => Ty::DateTime,
        "OffsetDateTime" | "UtcDateTime" => {
            let text = with.is_some_and(|w| {
                let w = w.to_ascii_lowercase();
                w.contains("rfc3339") || w.contains("iso8601")
            });
            if !text {
                return Err(syn::Error::new(
                    ty.span(),
                    "time's date-times serialize as an array by default; add \
                     #[serde(with = \"time::serde::rfc3339\")] (or `::option` for an Option) \
                     to store a date-time, or #[tidesync(ty = \"json\")] to store the array",
                ));
            }
            Ty::DateTime
        }
        _ => Ty::Json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_str(input: DeriveInput) -> Result<String, String> {
        expand(&input)
            .map(|tokens| tokens.to_string())
            .map_err(|e| e.to_string())
    }

    fn columns(input: DeriveInput) -> Vec<(String, Ty)> {
        read(&input).map(|(_, columns)| columns).expect("reads")
    }

    #[test]
    fn fields_become_typed_columns_and_system_fields_are_left_out() {
        let cols = columns(syn::parse_quote! {
            #[tidesync(table = "TodoItem")]
            #[serde(rename_all = "camelCase")]
            struct Todo {
                id: Option<String>,
                text: String,
                is_done: bool,
                priority: Option<i32>,
                weight: f64,
                due_at: Option<chrono::DateTime<chrono::Utc>>,
                tags: Vec<String>,
                version: Option<String>,
                updated_at: Option<String>,
                deleted: bool,
            }
        });
        assert_eq!(
            cols,
            [
                ("text".to_owned(), Ty::String),
                ("isDone".to_owned(), Ty::Bool),
                ("priority".to_owned(), Ty::Integer),
                ("weight".to_owned(), Ty::Real),
                ("dueAt".to_owned(), Ty::DateTime),
                ("tags".to_owned(), Ty::Json),
            ]
        );
    }

    #[test]
    fn serde_renames_and_skips_are_honoured() {
        let cols = columns(syn::parse_quote! {
            struct Todo {
                #[serde(default, skip_serializing_if = "Option::is_none")]
                id: Option<String>,
                #[serde(rename = "Text", alias = "t")]
                text: String,
                #[serde(rename(serialize = "done", deserialize = "complete"))]
                complete: bool,
                #[serde(skip)]
                cache: u32,
                #[tidesync(skip)]
                local_only: u32,
                #[tidesync(ty = "string")]
                status: Status,
                #[serde(with = "time::serde::rfc3339::option")]
                due: Option<time::OffsetDateTime>,
            }
        });
        assert_eq!(
            cols,
            [
                ("Text".to_owned(), Ty::String),
                ("done".to_owned(), Ty::Bool),
                ("status".to_owned(), Ty::String),
                ("due".to_owned(), Ty::DateTime),
            ]
        );
    }

    #[test]
    fn the_table_defaults_to_the_struct_name_and_the_crate_path_can_change() {
        let tokens = expand_str(syn::parse_quote! {
            #[tidesync(crate = "tidesync_core")]
            struct Note { id: String }
        })
        .expect("expands");
        assert!(
            tokens.contains("impl tidesync_core :: SyncItem for Note"),
            "{tokens}"
        );
        assert!(
            tokens.contains("const TABLE : & 'static str = \"Note\""),
            "{tokens}"
        );
    }

    #[test]
    fn rename_all_rules_match_serde() {
        for (rule, expected) in [
            (RenameRule::Camel, "dueAtUtc"),
            (RenameRule::Pascal, "DueAtUtc"),
            (RenameRule::ScreamingSnake, "DUE_AT_UTC"),
            (RenameRule::Kebab, "due-at-utc"),
            (RenameRule::ScreamingKebab, "DUE-AT-UTC"),
            (RenameRule::Lower, "due_at_utc"),
        ] {
            assert_eq!(rule.apply("due_at_utc"), expected);
        }
    }

    #[test]
    fn shapes_it_cannot_read_are_compile_errors_that_say_why() {
        let cases: Vec<(DeriveInput, &str)> = vec![
            (syn::parse_quote! { struct T(String); }, "named fields"),
            (syn::parse_quote! { enum T { A } }, "named fields"),
            (
                syn::parse_quote! { struct T { text: String } },
                "needs an `id` field",
            ),
            (
                syn::parse_quote! { struct T { id: u64 } },
                "`id` field must be",
            ),
            (
                syn::parse_quote! { struct T { id: String, #[serde(flatten)] rest: Extra } },
                "flatten",
            ),
            (
                syn::parse_quote! { struct T { id: String, due: time::OffsetDateTime } },
                "serialize as an array",
            ),
            (
                syn::parse_quote! { struct T { id: String, #[tidesync(ty = "blob")] b: Vec<u8> } },
                "unknown column type",
            ),
            (
                syn::parse_quote! { #[tidesync(tabel = "X")] struct T { id: String } },
                "unknown tidesync attribute",
            ),
            (
                syn::parse_quote! { struct T { id: String, name: String, #[serde(rename = "Name")] other: String } },
                "ignore case",
            ),
            (
                syn::parse_quote! { struct T<X> { id: String, x: X } },
                "generic",
            ),
        ];
        for (input, expected) in cases {
            let error = expand_str(input).expect_err("must not expand");
            assert!(
                error.contains(expected),
                "{error:?} should say {expected:?}"
            );
        }
    }
}
