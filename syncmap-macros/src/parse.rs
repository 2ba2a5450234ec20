//! The options of `#[memoize(...)]`.

use std::time::Duration;

use proc_macro2::{Span, TokenStream};
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, Ident, LitStr, Token, Type};

/// Parsed options, each with the span of its name for later errors.
#[derive(Default)]
pub(crate) struct Options {
    /// A `usize` expression: a literal, checked here, or a constant expression or path,
    /// evaluated at compile time in the generated code.
    pub(crate) capacity: Option<(Span, TokenStream)>,
    pub(crate) ttl: Option<(Span, Duration)>,
    pub(crate) key: Option<(Span, Type, Expr)>,
    pub(crate) ignore: Option<(Span, Vec<Ident>)>,
    pub(crate) cache_err: Option<Span>,
    pub(crate) skip_none: Option<Span>,
    pub(crate) in_impl: Option<Span>,
    pub(crate) shared: Option<Span>,
    /// A `u64` expression, as `capacity`.
    pub(crate) max_weight: Option<(Span, TokenStream)>,
    /// The path of a `fn(&K, &V) -> u64`.
    pub(crate) weigher: Option<(Span, syn::Path)>,
    /// `tier_errors = "return"` (`true`) or `"compute"` (`false`, the default).
    pub(crate) tier_errors: Option<(Span, bool)>,
}

const KNOWN: &str = "capacity, ttl, key, ignore, cache_err, skip_none, in_impl, shared, \
     tier_errors, max_weight, weigher";

/// Parses the attribute's arguments, collecting every error.
pub(crate) fn options(args: TokenStream) -> syn::Result<Options> {
    let parser = Punctuated::<Option_, Token![,]>::parse_terminated;
    let list = parser.parse2(args)?;
    let mut options = Options::default();
    let mut errors: Option<syn::Error> = None;
    let mut fail = |error: syn::Error| match &mut errors {
        Some(errors) => errors.combine(error),
        None => errors = Some(error),
    };
    for option in list {
        let name = option.name.to_string();
        let span = option.name.span();
        let duplicate = match option.value {
            Value::Capacity(n) => options.capacity.replace((span, n)).is_some(),
            Value::Ttl(d) => options.ttl.replace((span, d)).is_some(),
            Value::Key(key) => {
                let (ty, expr) = *key;
                options.key.replace((span, ty, expr)).is_some()
            }
            Value::Ignore(names) => options.ignore.replace((span, names)).is_some(),
            Value::CacheErr => options.cache_err.replace(span).is_some(),
            Value::SkipNone => options.skip_none.replace(span).is_some(),
            Value::InImpl => options.in_impl.replace(span).is_some(),
            Value::Shared => options.shared.replace(span).is_some(),
            Value::MaxWeight(n) => options.max_weight.replace((span, n)).is_some(),
            Value::Weigher(path) => options.weigher.replace((span, path)).is_some(),
            Value::TierErrors(ret) => options.tier_errors.replace((span, ret)).is_some(),
        };
        if duplicate {
            fail(syn::Error::new(
                span,
                format!("duplicate #[memoize] option `{name}`"),
            ));
        }
    }
    match errors {
        Some(errors) => Err(errors),
        None => Ok(options),
    }
}

/// One `name`, `name = value`, `name(...)` or `key: Type = expr`.
struct Option_ {
    name: Ident,
    value: Value,
}

enum Value {
    Capacity(TokenStream),
    Ttl(Duration),
    Key(Box<(Type, Expr)>),
    Ignore(Vec<Ident>),
    CacheErr,
    SkipNone,
    InImpl,
    Shared,
    MaxWeight(TokenStream),
    Weigher(syn::Path),
    TierErrors(bool),
}

impl Parse for Option_ {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let name: Ident = input.call(syn::ext::IdentExt::parse_any)?;
        let value = match name.to_string().as_str() {
            "capacity" => {
                input.parse::<Token![=]>()?;
                Value::Capacity(capacity(input)?)
            }
            "ttl" => {
                input.parse::<Token![=]>()?;
                let lit: LitStr = input.parse().map_err(|e| {
                    syn::Error::new(
                        e.span(),
                        "`ttl` takes a duration string: `ttl = \"30s\"` (units ms, s, m, h)",
                    )
                })?;
                Value::Ttl(duration(&lit)?)
            }
            "key" => {
                input.parse::<Token![:]>().map_err(|e| {
                    syn::Error::new(
                        e.span(),
                        "`key` takes a type and an expression: `key: u64 = id.0`",
                    )
                })?;
                let ty: Type = input.parse()?;
                input.parse::<Token![=]>()?;
                let expr: Expr = input.parse()?;
                Value::Key(Box::new((ty, expr)))
            }
            "ignore" => {
                let content;
                syn::parenthesized!(content in input);
                let names = Punctuated::<Ident, Token![,]>::parse_terminated_with(
                    &content,
                    syn::ext::IdentExt::parse_any,
                )?;
                if names.is_empty() {
                    return Err(syn::Error::new(
                        name.span(),
                        "`ignore` takes argument names: `ignore(log, self)`",
                    ));
                }
                Value::Ignore(names.into_iter().collect())
            }
            "max_weight" => {
                input.parse::<Token![=]>()?;
                Value::MaxWeight(max_weight(input)?)
            }
            "weigher" => {
                input.parse::<Token![=]>()?;
                Value::Weigher(
                    input
                        .parse()
                        .map_err(|e| syn::Error::new(e.span(), WEIGHER_ALLOWED))?,
                )
            }
            "tier_errors" => {
                input.parse::<Token![=]>()?;
                let lit: LitStr = input
                    .parse()
                    .map_err(|e| syn::Error::new(e.span(), TIER_ERRORS_ALLOWED))?;
                match lit.value().as_str() {
                    "return" => Value::TierErrors(true),
                    "compute" => Value::TierErrors(false),
                    _ => return Err(syn::Error::new(lit.span(), TIER_ERRORS_ALLOWED)),
                }
            }
            "cache_err" => Value::CacheErr,
            "skip_none" => Value::SkipNone,
            "in_impl" => Value::InImpl,
            "shared" if cfg!(feature = "redis") => Value::Shared,
            "shared" => {
                return Err(syn::Error::new(
                    name.span(),
                    "`shared` needs the `redis` feature of syncmemo: \
                     `syncmemo = { version = \"..\", features = [\"redis\"] }`",
                ))
            }
            other => {
                return Err(syn::Error::new(
                    name.span(),
                    format!("unknown #[memoize] option `{other}`; expected one of: {KNOWN}"),
                ))
            }
        };
        Ok(Option_ { name, value })
    }
}

const TIER_ERRORS_ALLOWED: &str = "`tier_errors` takes \"return\" (a fault of the shared tier \
     is returned as `Err(E::from(TierError))`) or \"compute\" (the default: the call computes \
     without the tier)";

const CAPACITY_ALLOWED: &str = "`capacity` takes a whole number of entries, at least 1: \
     `capacity = 1000`, or a constant `usize` expression such as `capacity = CACHE_SIZE` or \
     `capacity = 10 * 1024`";

/// `capacity = N`: a literal (checked now), or a constant expression (checked when compiled).
fn capacity(input: ParseStream) -> syn::Result<TokenStream> {
    let expr: Expr = input
        .parse()
        .map_err(|e| syn::Error::new(e.span(), CAPACITY_ALLOWED))?;
    match &expr {
        Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Int(lit),
            ..
        }) => {
            let n: usize = lit
                .base10_parse()
                .map_err(|_| syn::Error::new(lit.span(), CAPACITY_ALLOWED))?;
            if n == 0 {
                return Err(syn::Error::new(
                    lit.span(),
                    "`capacity` must be at least 1 (leave it out for an unbounded cache)",
                ));
            }
            Ok(quote::quote!(#n))
        }
        Expr::Lit(_)
        | Expr::Unary(syn::ExprUnary {
            op: syn::UnOp::Neg(_),
            ..
        }) => Err(syn::Error::new_spanned(&expr, CAPACITY_ALLOWED)),
        // A constant: its type and value are checked at compile time, where it is used.
        _ => Ok(quote::quote_spanned! {expr.span()=>
            {
                const CAPACITY: usize = #expr;
                const _: () = ::core::assert!(CAPACITY >= 1, "`capacity` must be at least 1");
                CAPACITY
            }
        }),
    }
}

const WEIGHER_ALLOWED: &str = "`weigher` takes the path of a function \
     `fn(&K, &V) -> u64` (K the cache's key type, V the return type): `weigher = my_weight`";

const MAX_WEIGHT_ALLOWED: &str = "`max_weight` takes a whole number, at least 1, the total \
     weight the weigher's weights may add up to: `max_weight = 1_000_000`, or a constant `u64` \
     expression such as `max_weight = 64 * 1024 * 1024`";

/// `max_weight = N`: as `capacity`, a `u64`.
fn max_weight(input: ParseStream) -> syn::Result<TokenStream> {
    let expr: Expr = input
        .parse()
        .map_err(|e| syn::Error::new(e.span(), MAX_WEIGHT_ALLOWED))?;
    match &expr {
        Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Int(lit),
            ..
        }) => {
            let n: u64 = lit
                .base10_parse()
                .map_err(|_| syn::Error::new(lit.span(), MAX_WEIGHT_ALLOWED))?;
            if n == 0 {
                return Err(syn::Error::new(
                    lit.span(),
                    "`max_weight` must be at least 1 (leave it out for an unbounded cache)",
                ));
            }
            Ok(quote::quote!(#n))
        }
        Expr::Lit(_)
        | Expr::Unary(syn::ExprUnary {
            op: syn::UnOp::Neg(_),
            ..
        }) => Err(syn::Error::new_spanned(&expr, MAX_WEIGHT_ALLOWED)),
        _ => Ok(quote::quote_spanned! {expr.span()=>
            {
                const MAX_WEIGHT: u64 = #expr;
                const _: () = ::core::assert!(MAX_WEIGHT >= 1, "`max_weight` must be at least 1");
                MAX_WEIGHT
            }
        }),
    }
}

/// Parses `"250ms"`, `"30s"`, `"5m"`, `"2h"`.
fn duration(lit: &LitStr) -> syn::Result<Duration> {
    let text = lit.value();
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || {
        syn::Error::new(
            lit.span(),
            format!(
                "invalid ttl {text:?}: write a whole number and a unit, ms, s, m or h: \"30s\""
            ),
        )
    };
    let number: u64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit.trim() {
        "ms" => return Ok(Duration::from_millis(number)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(bad()),
    };
    number
        .checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    #[test]
    fn durations() {
        let parse = |s: &str| duration(&LitStr::new(s, Span::call_site()));
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse("2 days").is_err());
        assert!(parse("s").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn options_and_errors() {
        let options = options(quote!(capacity = 10, ttl = "1s", ignore(a, b), cache_err)).unwrap();
        assert_eq!(options.capacity.unwrap().1.to_string(), "10usize");
        assert_eq!(options.ignore.unwrap().1.len(), 2);
        assert!(options.cache_err.is_some());
        let error = options_err(quote!(capacity = 1, capacity = 2));
        assert!(error.contains("duplicate"), "{error}");
        let error = options_err(quote!(capacityy = 1));
        assert!(
            error.contains("unknown #[memoize] option `capacityy`"),
            "{error}"
        );
        let error = options_err(quote!(capacity = "1"));
        assert!(error.contains("takes a whole number"), "{error}");
        let error = options_err(quote!(capacity = -1));
        assert!(error.contains("at least 1"), "{error}");
        let error = options_err(quote!(capacity = 0));
        assert!(error.contains("at least 1"), "{error}");
        let constant = super::options(quote!(capacity = 10 * 1024)).unwrap();
        assert!(constant
            .capacity
            .unwrap()
            .1
            .to_string()
            .contains("10 * 1024"));
    }

    #[test]
    fn weight_options() {
        let options = options(quote!(max_weight = 1000, weigher = sizes::bytes)).unwrap();
        assert_eq!(options.max_weight.unwrap().1.to_string(), "1000u64");
        let weigher = options.weigher.unwrap().1;
        assert_eq!(quote!(#weigher).to_string(), "sizes :: bytes");
        let error = options_err(quote!(max_weight = 0, weigher = f));
        assert!(error.contains("at least 1"), "{error}");
        let error = options_err(quote!(max_weight = "1", weigher = f));
        assert!(error.contains("takes a whole number"), "{error}");
        let error = options_err(quote!(max_weight = 10, weigher = "f"));
        assert!(error.contains("takes the path of a function"), "{error}");
    }

    fn options_err(tokens: TokenStream) -> String {
        match options(tokens) {
            Ok(_) => panic!("expected an error"),
            Err(error) => error.to_string(),
        }
    }
}
