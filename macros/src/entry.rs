//! The arguments of `#[bulwark::main]` and `#[bulwark::test]` read into a
//! [`Config`], and the expansion written from it: the async fn made sync,
//! its body handed to a runtime built with exactly the builder calls the
//! arguments ask for (tokio-macros' `entry.rs`, with bulwark's own knobs).
//!
//! Every mistake is a `syn::Error` spanned on what is wrong. With an error
//! the function is still expanded, with the default runtime, so the error
//! is the only one shown (no "`main` function not found" after it), as
//! tokio-macros does.

use proc_macro2::{Literal, Span, TokenStream};
use quote::{quote, ToTokens};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Attribute, Expr, ExprLit, ItemFn, Lit, Meta, Token};

/// Which attribute is expanding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `#[bulwark::main]`: multi-thread runtime by default.
    Main,
    /// `#[bulwark::test]`: current-thread runtime by default, and `#[test]`.
    Test,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Main => "bulwark::main",
            Kind::Test => "bulwark::test",
        }
    }
}

/// Which builder starts the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flavor {
    /// `Builder::new_multi_thread()`.
    MultiThread,
    /// `Builder::new_current_thread()`.
    CurrentThread,
}

/// A `default_deadline` as written: whole milliseconds or whole seconds, so
/// the expansion reads as a hand-written `Duration::from_millis(500)` or
/// `Duration::from_secs(120)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Deadline {
    Millis(u64),
    Secs(u64),
}

/// What the arguments ask for.
struct Config {
    flavor: Flavor,
    worker_threads: Option<usize>,
    start_paused: Option<bool>,
    max_tasks: Option<usize>,
    default_deadline: Option<Deadline>,
    crate_path: TokenStream,
}

impl Config {
    /// The runtime used to expand a function whose attribute has an error:
    /// the multi-thread builder with no knobs, which always compiles.
    fn fallback() -> Config {
        Config {
            flavor: Flavor::MultiThread,
            worker_threads: None,
            start_paused: None,
            max_tasks: None,
            default_deadline: None,
            crate_path: quote!(::bulwark),
        }
    }
}

/// The arguments every entry attribute takes, in the order errors list them.
const ARGUMENTS: &str =
    "`flavor`, `worker_threads`, `start_paused`, `max_tasks`, `default_deadline`, `crate`";

/// The forms `default_deadline` takes, as errors name them.
const DEADLINE_FORMS: &str = "\"500ms\", \"5s\", \"2m\" or \"1h\"";

/// Expands `#[bulwark::main(args)]` or `#[bulwark::test(args)]` on `item`.
pub(crate) fn expand(kind: Kind, args: TokenStream, item: TokenStream) -> TokenStream {
    let input: ItemFn = match syn::parse2(item.clone()) {
        Ok(input) => input,
        // Not a function: the error, and the item as it was.
        Err(e) => {
            let error = e.to_compile_error();
            return quote!(#error #item);
        }
    };
    let checked = check_fn(kind, &input);
    let config = Punctuated::<Meta, Token![,]>::parse_terminated
        .parse2(args)
        .and_then(|args| read_config(kind, args));
    match (checked, config) {
        (Ok(()), Ok(config)) => write(kind, input, &config),
        (checked, config) => {
            let mut errors: Option<syn::Error> = None;
            for e in [checked.err(), config.err()].into_iter().flatten() {
                match &mut errors {
                    Some(all) => all.combine(e),
                    None => errors = Some(e),
                }
            }
            let errors = errors.map(|e| e.to_compile_error());
            let mut input = input;
            if !input.sig.inputs.is_empty() {
                // Expanded with its parameters, the function would draw a
                // second error from rustc ("`main` function has wrong
                // type"); without them its body would not compile.
                input.sig.inputs.clear();
                input.block = syn::parse_quote!({ ::core::unreachable!() });
            }
            let fallback = write(kind, input, &Config::fallback());
            quote!(#errors #fallback)
        }
    }
}

/// The errors of the function itself: not async, parameters where none are
/// taken, a second `#[test]`.
fn check_fn(kind: Kind, input: &ItemFn) -> syn::Result<()> {
    let mut errors = Vec::new();
    if input.sig.asyncness.is_none() {
        errors.push(syn::Error::new_spanned(
            input.sig.fn_token,
            "the `async` keyword is missing from the function declaration",
        ));
    }
    // tokio's rules: a test takes no parameters (rustc's own test harness
    // would refuse them), nor does `main`; any other function under
    // `#[bulwark::main]` may take some, as under `#[tokio::main]`.
    let no_params = match kind {
        Kind::Test => Some("the test function cannot accept arguments"),
        Kind::Main if input.sig.ident == "main" => {
            Some("the main function cannot accept arguments")
        }
        Kind::Main => None,
    };
    if let Some(msg) = no_params {
        if !input.sig.inputs.is_empty() {
            errors.push(syn::Error::new_spanned(&input.sig.inputs, msg));
        }
    }
    if kind == Kind::Test {
        if let Some(attr) = input.attrs.iter().find(|a| is_test_attribute(a)) {
            errors.push(syn::Error::new_spanned(
                attr,
                "second test attribute is supplied: `#[bulwark::test]` adds `#[test]` itself, \
                 remove this one",
            ));
        }
    }
    let mut errors = errors.into_iter();
    match errors.next() {
        None => Ok(()),
        Some(mut first) => {
            errors.for_each(|e| first.combine(e));
            Err(first)
        }
    }
}

/// `#[test]`, `#[core::prelude::v1::test]`, `#[::std::prelude::rust_2021::test]`.
fn is_test_attribute(attr: &Attribute) -> bool {
    let path = attr.path();
    let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    match segments.as_slice() {
        [only] => only == "test" && path.leading_colon.is_none(),
        [krate, prelude, _, last] => {
            (krate == "core" || krate == "std") && prelude == "prelude" && last == "test"
        }
        _ => false,
    }
}

/// Reads `name = value, ...` into a [`Config`], refusing unknown names,
/// repeats, bad values and combinations tokio refuses.
fn read_config(kind: Kind, args: Punctuated<Meta, Token![,]>) -> syn::Result<Config> {
    let mut flavor: Option<(Flavor, Span)> = None;
    let mut worker_threads: Option<(usize, Span)> = None;
    let mut start_paused: Option<(bool, Span)> = None;
    let mut max_tasks: Option<usize> = None;
    let mut default_deadline: Option<Deadline> = None;
    let mut crate_path: Option<TokenStream> = None;

    for arg in args {
        let Meta::NameValue(nv) = arg else {
            return Err(syn::Error::new_spanned(
                arg,
                "expected `name = value`, as in `worker_threads = 4`",
            ));
        };
        let name = match nv.path.get_ident() {
            Some(ident) => ident.to_string(),
            None => {
                return Err(syn::Error::new_spanned(
                    &nv.path,
                    format!("unknown argument; expected one of: {ARGUMENTS}"),
                ))
            }
        };
        let value = &nv.value;
        let span = value.span();
        let repeated =
            || syn::Error::new_spanned(&nv.path, format!("`{name}` is set more than once"));
        match name.as_str() {
            "flavor" => {
                if flavor.is_some() {
                    return Err(repeated());
                }
                flavor = Some((read_flavor(value)?, span));
            }
            "worker_threads" => {
                if worker_threads.is_some() {
                    return Err(repeated());
                }
                worker_threads = Some((read_count(&name, value)?, span));
            }
            "start_paused" => {
                if start_paused.is_some() {
                    return Err(repeated());
                }
                start_paused = Some((read_bool(&name, value)?, span));
            }
            "max_tasks" => {
                if max_tasks.is_some() {
                    return Err(repeated());
                }
                max_tasks = Some(read_count(&name, value)?);
            }
            "default_deadline" => {
                if default_deadline.is_some() {
                    return Err(repeated());
                }
                default_deadline = Some(read_deadline(value)?);
            }
            "crate" => {
                if crate_path.is_some() {
                    return Err(repeated());
                }
                crate_path = Some(read_crate(value)?);
            }
            _ => {
                return Err(syn::Error::new_spanned(
                    &nv.path,
                    format!("unknown argument `{name}`; expected one of: {ARGUMENTS}"),
                ))
            }
        }
    }

    let flavor_given = flavor.map(|(f, _)| f);
    let flavor = flavor_given.unwrap_or(match kind {
        Kind::Main => Flavor::MultiThread,
        // tokio's test runtime is current_thread by default.
        Kind::Test => Flavor::CurrentThread,
    });
    if let (Flavor::CurrentThread, Some((_, span))) = (flavor, worker_threads) {
        return Err(syn::Error::new(
            span,
            format!(
                "the `worker_threads` option requires the `multi_thread` runtime flavor; \
                 use `#[{}(flavor = \"multi_thread\")]`",
                kind.name()
            ),
        ));
    }
    if let (Flavor::MultiThread, Some((_, span))) = (flavor, start_paused) {
        return Err(syn::Error::new(
            span,
            format!(
                "the `start_paused` option requires the `current_thread` runtime flavor; \
                 use `#[{}(flavor = \"current_thread\")]`",
                kind.name()
            ),
        ));
    }
    Ok(Config {
        flavor,
        worker_threads: worker_threads.map(|(n, _)| n),
        start_paused: start_paused.map(|(b, _)| b),
        max_tasks,
        default_deadline,
        crate_path: crate_path.unwrap_or_else(|| quote!(::bulwark)),
    })
}

fn lit(value: &Expr) -> Option<&Lit> {
    match value {
        Expr::Lit(ExprLit { lit, .. }) => Some(lit),
        // `#[attr(name = $value)]` from a `macro_rules!` arrives grouped.
        Expr::Group(group) => lit(&group.expr),
        _ => None,
    }
}

fn read_flavor(value: &Expr) -> syn::Result<Flavor> {
    let Some(Lit::Str(s)) = lit(value) else {
        return Err(syn::Error::new_spanned(
            value,
            "`flavor` must be a string, as in `flavor = \"current_thread\"`",
        ));
    };
    match s.value().as_str() {
        "multi_thread" => Ok(Flavor::MultiThread),
        "current_thread" => Ok(Flavor::CurrentThread),
        other => Err(syn::Error::new_spanned(
            s,
            format!(
                "no such runtime flavor `{other}`; the flavors are `multi_thread` and \
                 `current_thread`"
            ),
        )),
    }
}

/// A positive integer literal (`worker_threads`, `max_tasks`).
fn read_count(name: &str, value: &Expr) -> syn::Result<usize> {
    let Some(Lit::Int(int)) = lit(value) else {
        return Err(syn::Error::new_spanned(
            value,
            format!("`{name}` must be an integer, as in `{name} = 4`"),
        ));
    };
    let n: usize = int
        .base10_parse()
        .map_err(|e| syn::Error::new_spanned(int, format!("`{name}`: {e}")))?;
    if n == 0 {
        return Err(syn::Error::new_spanned(
            int,
            format!("`{name}` may not be 0: the runtime refuses it"),
        ));
    }
    Ok(n)
}

fn read_bool(name: &str, value: &Expr) -> syn::Result<bool> {
    match lit(value) {
        Some(Lit::Bool(b)) => Ok(b.value),
        _ => Err(syn::Error::new_spanned(
            value,
            format!("`{name}` must be `true` or `false`"),
        )),
    }
}

fn read_deadline(value: &Expr) -> syn::Result<Deadline> {
    let Some(Lit::Str(s)) = lit(value) else {
        return Err(syn::Error::new_spanned(
            value,
            format!("`default_deadline` must be a string: {DEADLINE_FORMS}"),
        ));
    };
    parse_deadline(&s.value()).map_err(|msg| syn::Error::new_spanned(s, msg))
}

/// `"500ms"`, `"5s"`, `"2m"`, `"1h"`: a whole number above zero and a unit.
fn parse_deadline(text: &str) -> Result<Deadline, String> {
    let bad = || {
        format!(
            "bad `default_deadline` \"{text}\": write a whole number and a unit, as in \
             {DEADLINE_FORMS}"
        )
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(bad());
    }
    let too_long = || format!("`default_deadline` \"{text}\" is too long for a `Duration`");
    let n: u64 = digits.parse().map_err(|_| too_long())?;
    if n == 0 {
        return Err(format!(
            "`default_deadline` \"{text}\" is zero: every task would be past its deadline \
             at once"
        ));
    }
    match unit {
        "ms" => Ok(Deadline::Millis(n)),
        "s" => Ok(Deadline::Secs(n)),
        "m" => n.checked_mul(60).map(Deadline::Secs).ok_or_else(too_long),
        "h" => n.checked_mul(3600).map(Deadline::Secs).ok_or_else(too_long),
        _ => Err(bad()),
    }
}

fn read_crate(value: &Expr) -> syn::Result<TokenStream> {
    let Some(Lit::Str(s)) = lit(value) else {
        return Err(syn::Error::new_spanned(
            value,
            "`crate` must be a path in a string, as in `crate = \"::bulwark\"`",
        ));
    };
    let path: syn::Path = s
        .parse()
        .map_err(|e| syn::Error::new_spanned(s, format!("`crate` is not a path: {e}")))?;
    Ok(path.into_token_stream())
}

/// The expansion: `fn` (no `async`) with the same attributes, visibility,
/// name and return type, whose body builds the runtime and blocks on the
/// async body.
fn write(kind: Kind, mut input: ItemFn, config: &Config) -> TokenStream {
    input.sig.asyncness = None;
    let krate = &config.crate_path;
    let mut rt = match config.flavor {
        Flavor::MultiThread => quote!(#krate::runtime::Builder::new_multi_thread()),
        Flavor::CurrentThread => quote!(#krate::runtime::Builder::new_current_thread()),
    };
    if let Some(n) = config.worker_threads {
        let n = Literal::usize_unsuffixed(n);
        rt = quote!(#rt.worker_threads(#n));
    }
    if let Some(n) = config.max_tasks {
        let n = Literal::usize_unsuffixed(n);
        rt = quote!(#rt.max_tasks(#n));
    }
    if let Some(deadline) = config.default_deadline {
        let duration = match deadline {
            Deadline::Millis(n) => {
                let n = Literal::u64_unsuffixed(n);
                quote!(::core::time::Duration::from_millis(#n))
            }
            Deadline::Secs(n) => {
                let n = Literal::u64_unsuffixed(n);
                quote!(::core::time::Duration::from_secs(#n))
            }
        };
        rt = quote!(#rt.default_deadline(::core::option::Option::Some(#duration)));
    }
    if let Some(paused) = config.start_paused {
        rt = quote!(#rt.start_paused(#paused));
    }

    let body = &input.block;
    let setup = match kind {
        Kind::Main => quote! {
            let body = async #body;
        },
        // As tokio: the test's future is pinned and used as a `dyn Future`,
        // so `block_on` is compiled once per output type, not once per test.
        Kind::Test => {
            let output = match &input.sig.output {
                syn::ReturnType::Default => quote!(()),
                syn::ReturnType::Type(_, ty) => quote!(#ty),
            };
            quote! {
                let body = async #body;
                let body = ::core::pin::pin!(body);
                let body: ::core::pin::Pin<&mut dyn ::core::future::Future<Output = #output>> =
                    body;
            }
        }
    };
    *input.block = syn::parse_quote!({
        #setup
        #[allow(clippy::expect_used, clippy::diverging_sub_expression, clippy::needless_return)]
        {
            return #rt
                .build()
                .expect("Failed building the Runtime")
                .block_on(body);
        }
    });
    let test = match kind {
        Kind::Test if !input.attrs.iter().any(is_test_attribute) => {
            quote!(#[::core::prelude::v1::test])
        }
        _ => quote!(),
    };
    quote! {
        #test
        #input
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_str(kind: Kind, args: TokenStream, item: TokenStream) -> String {
        expand(kind, args, item).to_string()
    }

    /// The proof that the macro adds nothing: a fully-knobbed `main` expands
    /// to exactly the hand-written builder calls a service would write, and
    /// nothing else (the body is one `async` block handed to `block_on`).
    #[test]
    fn main_expands_to_the_builder_calls() {
        let got = expand_str(
            Kind::Main,
            quote!(
                worker_threads = 4,
                max_tasks = 10_000,
                default_deadline = "5s"
            ),
            quote! {
                /// Doc kept.
                pub async fn main() -> Result<(), std::io::Error> {
                    serve().await
                }
            },
        );
        let want = quote! {
            /// Doc kept.
            pub fn main() -> Result<(), std::io::Error> {
                let body = async {
                    serve().await
                };
                #[allow(clippy::expect_used, clippy::diverging_sub_expression, clippy::needless_return)]
                {
                    return ::bulwark::runtime::Builder::new_multi_thread()
                        .worker_threads(4)
                        .max_tasks(10_000)
                        .default_deadline(::core::option::Option::Some(::core::time::Duration::from_secs(5)))
                        .build()
                        .expect("Failed building the Runtime")
                        .block_on(body);
                }
            }
        };
        // `10_000` is written back as `10000`: the value, not the spelling.
        assert_eq!(got, want.to_string().replace("10_000", "10000"));
    }

    #[test]
    fn main_defaults_to_the_multi_thread_builder_with_no_knobs() {
        let got = expand_str(
            Kind::Main,
            quote!(),
            quote!(
                async fn main() {}
            ),
        );
        let want = quote! {
            fn main() {
                let body = async {};
                #[allow(clippy::expect_used, clippy::diverging_sub_expression, clippy::needless_return)]
                {
                    return ::bulwark::runtime::Builder::new_multi_thread()
                        .build()
                        .expect("Failed building the Runtime")
                        .block_on(body);
                }
            }
        };
        assert_eq!(got, want.to_string());
    }

    #[test]
    fn test_defaults_to_current_thread_and_adds_test_attribute() {
        let got = expand_str(
            Kind::Test,
            quote!(
                start_paused = true,
                max_tasks = 8,
                default_deadline = "500ms"
            ),
            quote! {
                #[should_panic]
                async fn it_works() -> Result<(), String> { Ok(()) }
            },
        );
        let want = quote! {
            #[::core::prelude::v1::test]
            #[should_panic]
            fn it_works() -> Result<(), String> {
                let body = async { Ok(()) };
                let body = ::core::pin::pin!(body);
                let body: ::core::pin::Pin<&mut dyn ::core::future::Future<Output = Result<(), String> > > =
                    body;
                #[allow(clippy::expect_used, clippy::diverging_sub_expression, clippy::needless_return)]
                {
                    return ::bulwark::runtime::Builder::new_current_thread()
                        .max_tasks(8)
                        .default_deadline(::core::option::Option::Some(::core::time::Duration::from_millis(500)))
                        .start_paused(true)
                        .build()
                        .expect("Failed building the Runtime")
                        .block_on(body);
                }
            }
        };
        assert_eq!(got, want.to_string());
    }

    #[test]
    fn test_with_multi_thread_flavor_and_crate_path() {
        let got = expand_str(
            Kind::Test,
            quote!(
                flavor = "multi_thread",
                worker_threads = 2,
                crate = "my::rt"
            ),
            quote!(
                async fn t() {}
            ),
        );
        assert!(
            got.starts_with("# [:: core :: prelude :: v1 :: test] fn t ()"),
            "{got}"
        );
        assert!(
            got.contains(
                "return my :: rt :: runtime :: Builder :: new_multi_thread () . worker_threads (2) . build ()"
            ),
            "{got}"
        );
    }

    #[test]
    fn main_flavor_current_thread() {
        let got = expand_str(
            Kind::Main,
            quote!(flavor = "current_thread"),
            quote!(
                async fn main() {}
            ),
        );
        assert!(
            got.contains("Builder :: new_current_thread () . build ()"),
            "{got}"
        );
    }

    #[test]
    fn deadline_forms() {
        assert_eq!(parse_deadline("500ms"), Ok(Deadline::Millis(500)));
        assert_eq!(parse_deadline("5s"), Ok(Deadline::Secs(5)));
        assert_eq!(parse_deadline("2m"), Ok(Deadline::Secs(120)));
        assert_eq!(parse_deadline("1h"), Ok(Deadline::Secs(3600)));
        for bad in ["", "5", "s", "5 s", "5sec", "1.5s", "-1s", "5S", "10us"] {
            let err = parse_deadline(bad).unwrap_err();
            assert!(
                err.contains("\"500ms\", \"5s\", \"2m\" or \"1h\""),
                "{bad}: {err}"
            );
        }
        assert!(parse_deadline("0s").unwrap_err().contains("zero"));
        assert!(parse_deadline("99999999999999999999s")
            .unwrap_err()
            .contains("too long"));
        assert!(parse_deadline("18446744073709551615h")
            .unwrap_err()
            .contains("too long"));
    }

    /// Each mistake gives one `compile_error!` naming it, and the function
    /// is still expanded (so no second error follows).
    #[test]
    fn errors_name_the_mistake() {
        let cases: &[(Kind, TokenStream, TokenStream, &str)] = &[
            (
                Kind::Main,
                quote!(),
                quote!(
                    fn main() {}
                ),
                "`async` keyword is missing",
            ),
            (
                Kind::Main,
                quote!(threads = 2),
                quote!(
                    async fn main() {}
                ),
                "unknown argument `threads`",
            ),
            (
                Kind::Main,
                quote!(worker_threads = "2"),
                quote!(
                    async fn main() {}
                ),
                "must be an integer",
            ),
            (
                Kind::Main,
                quote!(worker_threads = 0),
                quote!(
                    async fn main() {}
                ),
                "may not be 0",
            ),
            (
                Kind::Main,
                quote!(max_tasks = 0),
                quote!(
                    async fn main() {}
                ),
                "may not be 0",
            ),
            (
                Kind::Main,
                quote!(flavor = "local"),
                quote!(
                    async fn main() {}
                ),
                "no such runtime flavor `local`",
            ),
            (
                Kind::Main,
                quote!(default_deadline = "5 sec"),
                quote!(
                    async fn main() {}
                ),
                "\"500ms\", \"5s\", \"2m\" or \"1h\"",
            ),
            (
                Kind::Main,
                quote!(),
                quote!(
                    async fn main(x: u32) {}
                ),
                "main function cannot accept arguments",
            ),
            (
                Kind::Test,
                quote!(),
                quote!(
                    async fn t(x: u32) {}
                ),
                "test function cannot accept arguments",
            ),
            (
                Kind::Test,
                quote!(worker_threads = 2),
                quote!(
                    async fn t() {}
                ),
                "requires the `multi_thread` runtime flavor",
            ),
            (
                Kind::Main,
                quote!(start_paused = true),
                quote!(
                    async fn main() {}
                ),
                "requires the `current_thread` runtime flavor",
            ),
            (
                Kind::Main,
                quote!(max_tasks = 1, max_tasks = 2),
                quote!(
                    async fn main() {}
                ),
                "`max_tasks` is set more than once",
            ),
            (
                Kind::Test,
                quote!(),
                quote!(
                    #[test]
                    async fn t() {}
                ),
                "second test attribute",
            ),
            (
                Kind::Main,
                quote!(multi_thread),
                quote!(
                    async fn main() {}
                ),
                "expected `name = value`",
            ),
        ];
        for (kind, args, item, want) in cases {
            let got = expand_str(*kind, args.clone(), item.clone());
            assert_eq!(got.matches("compile_error").count(), 1, "{got}");
            // Inside `compile_error!` the message is a string literal.
            let escaped = want.replace('"', "\\\"");
            assert!(got.contains(&escaped), "{want}: {got}");
            assert!(got.contains("new_multi_thread"), "expanded anyway: {got}");
        }
    }

    #[test]
    fn other_functions_under_main_may_take_parameters() {
        let got = expand_str(
            Kind::Main,
            quote!(),
            quote!(
                async fn run(port: u16) -> u16 {
                    port
                }
            ),
        );
        assert!(!got.contains("compile_error"), "{got}");
        assert!(got.starts_with("fn run (port : u16) -> u16"), "{got}");
    }
}
