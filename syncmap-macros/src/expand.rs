//! Generates the cached function, `<fn>_cache()` and `<fn>_uncached`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{GenericParam, ItemFn};

use crate::{parse, validate};

pub(crate) fn memoize(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    if let Some(error) = crate::expand_async::closure_or_async_block(&item) {
        return Err(error);
    }
    let function: ItemFn = syn::parse2(item.clone()).map_err(|error| {
        syn::Error::new(
            error.span(),
            "#[memoize] applies to functions (free functions, methods and associated functions)",
        )
    })?;
    // Report option errors and signature errors together.
    let options = parse::options(args);
    let plan = match &options {
        Ok(options) => validate::plan(&function, options),
        Err(_) => validate::plan(&function, &parse::Options::default()),
    };
    let (options, plan) = match (options, plan) {
        (Ok(options), Ok(plan)) => (options, plan),
        (Err(mut a), Err(b)) => {
            a.combine(b);
            return Err(a);
        }
        (Err(e), _) | (_, Err(e)) => return Err(e),
    };

    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = &function;
    let name = &sig.ident;
    let cache_fn = format_ident!("{}_cache", name);
    let uncached_fn = format_ident!("{}_uncached", name);
    let validate::Plan {
        key_ty,
        value_ty,
        setup,
        view,
        make_key,
        keep,
        call_args,
        in_impl,
        per_instantiation,
        key_asserts,
    } = plan;

    // In an `impl`, `Self` is a sized type and these bounds hold trivially; in a trait's provided
    // method they make the generated items well-formed, so the key checks (`Self: KeyPart`)
    // are what the user reads, and a trait with the key traits as supertraits just works.
    let mut sig = sig.clone();
    if in_impl {
        sig.generics
            .make_where_clause()
            .predicates
            .push(syn::parse_quote!(Self: ::core::marker::Sized + 'static));
    }
    let sig = &sig;

    let capacity = match options.capacity {
        Some((_, n)) => quote!(::core::option::Option::Some(#n)),
        None => quote!(::core::option::Option::None),
    };
    let ttl = match options.ttl {
        Some((_, d)) => {
            let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
            quote!(::core::option::Option::Some(::core::time::Duration::new(#secs, #nanos)))
        }
        None => quote!(::core::option::Option::None),
    };
    // `shared`: the tier's hook for these key and value types, picked by a probe so that a key
    // or value type that serde cannot store is reported once, by the `SharedType` checks at
    // its argument or return type (see `validate`).
    let (shared, shared_factory) = match options.shared {
        Some(_) => (
            quote!(true),
            quote!({
                #[allow(unused_imports)]
                use ::syncmemo::__private::{ViaNotShared as _, ViaShared as _};
                (&&::syncmemo::__private::SharedProbe::<#key_ty, #value_ty>::new()).factory()
            }),
        ),
        None => (quote!(false), quote!(::core::option::Option::None)),
    };
    let max_weight = match options.max_weight {
        Some((_, n)) => quote!(::core::option::Option::Some(#n)),
        None => quote!(::core::option::Option::None),
    };
    // The weigher, called as `f(&K, &V) -> u64` (so deref coercions apply: it may take `&str`
    // for a `String`, `&[T]` for a `Vec<T>`), with errors at its path.
    let weigher = match &options.weigher {
        Some((_, path)) => quote_spanned! {path.span()=>
            ::core::option::Option::Some({
                let weigher: fn(&#key_ty, &#value_ty) -> u64 = |key, value| #path(key, value);
                weigher
            })
        },
        None => quote!(::core::option::Option::None),
    };
    // `tier_errors = "return"`: how a fault of the tier becomes the result (`Err(E::from(..))`),
    // checked at the return type. The field exists with the `redis` feature only.
    let tier_error = if !cfg!(feature = "redis") {
        quote!()
    } else if let Some((_, true)) = options.tier_errors {
        let span = match &sig.output {
            syn::ReturnType::Type(_, ty) => ty.span(),
            syn::ReturnType::Default => sig.ident.span(),
        };
        quote_spanned! {span=>
            tier_error: ::core::option::Option::Some(
                <#value_ty as ::syncmemo::tier::FromTierError>::from_tier_error,
            ),
        }
    } else {
        quote!(tier_error: ::core::option::Option::None,)
    };
    let memo_options = quote! {
        ::syncmemo::__private::MemoOptions {
            capacity: #capacity,
            ttl: #ttl,
            shared: #shared,
            max_weight: #max_weight,
        }
    };
    let memo_name = quote!(::core::concat!(
        ::core::module_path!(),
        "::",
        ::core::stringify!(#name)
    ));
    let debug = quote! {
        || ::syncmemo::__private::MemoDebug {
            key: ::syncmemo::__private::debug_fn!(#key_ty),
            value: ::syncmemo::__private::debug_fn!(#value_ty),
            shared: #shared_factory,
            weigher: #weigher,
            #tier_error
        }
    };

    // The generics to name when calling the siblings (types and consts; lifetimes are inferred).
    let turbofish_params: Vec<_> = sig
        .generics
        .params
        .iter()
        .filter_map(|param| match param {
            GenericParam::Type(t) => Some(t.ident.clone()),
            GenericParam::Const(c) => Some(c.ident.clone()),
            GenericParam::Lifetime(_) => None,
        })
        .collect();
    let turbofish = if turbofish_params.is_empty() {
        quote!()
    } else {
        quote!(::<#(#turbofish_params),*>)
    };
    let path_prefix = if in_impl { quote!(Self::) } else { quote!() };

    // Every operation that needs `K: Hash + Eq` or `V: Clone` goes through the probe: for a key
    // or value that fails the checks of `key_asserts`, it picks inert operations, so those
    // checks, spanned at the argument or return type, are the function's only errors.
    let (impl_generics, _, where_clause) = sig.generics.split_for_impl();
    let probe = quote! {
        #[allow(unused_imports)]
        use ::syncmemo::__private::{
            ViaClone as _, ViaMemo as _, ViaNoClone as _, ViaRejected as _,
        };
        let __syncmap_probe = &&::syncmemo::__private::Probe::<#key_ty, #value_ty>::new();
    };
    // Each instantiation of a generic function (or method of a generic type) has its own cache,
    // told apart by the `TypeId` of its key, value and generic parameters, and named after them
    // (`module::Type::method`, `module::f::<u8>`).
    let mut instance_parts = Vec::new();
    let mut param_names = Vec::new();
    if in_impl {
        // A trait's provided method has one static for every implementing type.
        instance_parts.push(quote!(::core::marker::PhantomData<Self>));
    }
    for param in &sig.generics.params {
        match param {
            GenericParam::Type(t) => {
                let ident = &t.ident;
                instance_parts.push(quote!(::core::marker::PhantomData<#ident>));
                param_names.push(quote!(::std::string::String::from(
                    ::core::any::type_name::<#ident>()
                )));
            }
            GenericParam::Const(c) => {
                let ident = &c.ident;
                if matches!(&c.ty, syn::Type::Path(p) if p.path.is_ident("usize")) {
                    instance_parts.push(quote!([(); #ident]));
                }
                param_names.push(quote!(::std::string::ToString::to_string(&#ident)));
            }
            GenericParam::Lifetime(_) => {}
        }
    }
    let instance = quote!(::core::any::TypeId::of::<(
        #key_ty,
        #value_ty,
        (#(#instance_parts,)*),
    )>());
    let self_name = if in_impl {
        quote!(::core::option::Option::Some(
            ::core::any::type_name::<Self>()
        ))
    } else {
        quote!(::core::option::Option::None)
    };
    let instance_name = quote! {
        || ::syncmemo::__private::instance_name(
            ::core::module_path!(),
            #self_name,
            ::core::stringify!(#name),
            &[#(#param_names),*],
        )
    };
    let lookup = if per_instantiation {
        quote! {
            static __SYNCMAP_MEMOS: ::syncmemo::__private::GenericMemos =
                ::syncmemo::__private::GenericMemos::new();
            __syncmap_probe.generic_memo(
                &__SYNCMAP_MEMOS,
                #instance,
                #instance_name,
                #memo_options,
                #debug,
            )
        }
    } else {
        quote! {
            static __SYNCMAP_MEMO: ::syncmemo::__private::StaticMemo<#key_ty, #value_ty> =
                ::syncmemo::__private::StaticMemo::new(#memo_name, #memo_options);
            __syncmap_probe.static_memo(&__SYNCMAP_MEMO, #debug)
        }
    };

    let other_attrs: Vec<_> = attrs
        .iter()
        .filter(|attr| !attr.path().is_ident("doc"))
        .collect();
    let cache_doc = format!("The cache of [`{name}`], created on its first call (`#[memoize]`).");
    let uncached_doc = format!("[`{name}`] without the cache: runs the body every time.");

    let mut uncached_sig = sig.clone();
    uncached_sig.ident = uncached_fn.clone();

    // Outside a known `impl`, the generated functions cannot name each other (`f_cache()` in a
    // module is `Self::f_cache()` in an `impl`): both find the cache by site, and the cached
    // function runs the body inline instead of calling `f_uncached`.
    let site = quote!(::core::concat!(
        ::core::module_path!(),
        "::",
        ::core::stringify!(#name),
        "@",
        ::core::line!(),
        ":",
        ::core::column!()
    ));
    let uncached_call = quote!(#path_prefix #uncached_fn #turbofish(#(#call_args),*));
    // A `shared` function's `f_cache()` returns a `SharedMemo` (whose `invalidate` and `clear`
    // reach Redis); the function itself uses the `Memo` inside.
    let to_memo = if options.shared.is_some() {
        quote!(.memo())
    } else {
        quote!()
    };
    let (lookup, wrapper_lookup, compute) = if in_impl {
        (
            lookup,
            quote!(#path_prefix #cache_fn #turbofish() #to_memo),
            quote!(move || #uncached_call),
        )
    } else {
        let by_site = if per_instantiation {
            quote!(__syncmap_probe.generic_site_memo(
                #site,
                #instance,
                #instance_name,
                #memo_options,
                #debug,
            ))
        } else {
            quote!({
                static __SYNCMAP_SITE: ::syncmemo::__private::SiteMemo<#key_ty, #value_ty> =
                    ::syncmemo::__private::SiteMemo::new();
                __syncmap_probe.site_memo(&__SYNCMAP_SITE, #site, #memo_name, #memo_options, #debug)
            })
        };
        let output = match &sig.output {
            syn::ReturnType::Type(_, ty) => quote!(-> #ty),
            syn::ReturnType::Default => quote!(),
        };
        (
            quote!({ #by_site }),
            by_site,
            quote!(move || #output #block),
        )
    };

    let miss_call = if sig.asyncness.is_some() {
        let in_impl_call = in_impl.then_some(uncached_call);
        crate::expand_async::miss(in_impl_call, block, &make_key, &keep)
    } else {
        quote!(__syncmap_probe.miss(__syncmap_memo, #make_key, #compute, #keep))
    };

    // A same-key recursion panics at the recursive call, not inside the runtime (`async fn`
    // cannot be `#[track_caller]` on stable Rust).
    let track_caller = if sig.abi.is_none() && sig.asyncness.is_none() {
        quote!(#[track_caller])
    } else {
        quote!()
    };

    // The body's braces keep the user's span: an item whose span ends in the macro's output is
    // left out of the dead-code lint, and an unused memoized function must warn as a plain one.
    let body = quote! {
            #key_asserts
            #probe
            let __syncmap_memo = #wrapper_lookup;
            #setup
            if let ::core::option::Option::Some(__syncmap_value) =
                __syncmap_probe.hit(__syncmap_memo, #view)
            {
                return __syncmap_value;
            }
            // On a miss the owned key is built before the arguments move into the body.
            #miss_call
    };
    let (cache_ty, cache_value) = if options.shared.is_some() {
        (
            quote!(::syncmemo::tier::SharedMemo<#key_ty, #value_ty>),
            quote!(::syncmemo::tier::SharedMemo::__new({ #lookup })),
        )
    } else {
        (
            quote!(&'static ::syncmemo::Memo<#key_ty, #value_ty>),
            lookup,
        )
    };
    let mut body = proc_macro2::Group::new(proc_macro2::Delimiter::Brace, body);
    body.set_span(block.brace_token.span.join());

    Ok(quote! {
        #(#attrs)*
        #track_caller
        #vis #sig #body

        #[doc = #cache_doc]
        #(#other_attrs)*
        #[allow(clippy::type_complexity, dead_code)]
        #vis fn #cache_fn #impl_generics () -> #cache_ty #where_clause {
            #probe
            #cache_value
        }

        #[doc = #uncached_doc]
        #(#other_attrs)*
        #[allow(dead_code)]
        #vis #uncached_sig #block
    })
}
