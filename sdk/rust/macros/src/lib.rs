//! The `#[gojinn::handler]` attribute of the Gojinn Rust SDK.
//!
//! It keeps the annotated function as written and adds a `fn main()` that hands it to the SDK's
//! runtime, which reads the request envelope from stdin and writes the response to stdout. It
//! never looks at types: the runtime's `IntoResponse` bound checks the return type.

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::quote;
use syn::{ItemFn, Path, Signature, parse_macro_input, spanned::Spanned};

/// Turns `fn NAME(req: Request) -> R` (with `R: IntoResponse`) into the function's entry point.
///
/// The SDK is reached as `::gojinn` (the name users give the dependency); write
/// `#[handler(crate = my_name)]` if it is imported under another name.
#[proc_macro_attribute]
pub fn handler(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut sdk: Path = syn::parse_quote!(::gojinn);
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("crate") {
            sdk = meta.value()?.parse()?;
            Ok(())
        } else {
            Err(meta.error("expected `crate = path`"))
        }
    });
    parse_macro_input!(args with parser);
    let function = parse_macro_input!(item as ItemFn);
    if let Err(error) = check_signature(&function.sig) {
        return error.to_compile_error().into();
    }
    let name = &function.sig.ident;
    quote! {
        #function

        fn main() {
            #sdk::__private::run(#name)
        }
    }
    .into()
}

/// Rejects what cannot be a handler, pointing at the offending part of the signature.
fn check_signature(sig: &Signature) -> syn::Result<()> {
    let reject = |span: Span, message: &str| Err(syn::Error::new(span, message));
    if sig.ident == "main" {
        return reject(sig.ident.span(), "a handler cannot be named `main`: `main` is generated");
    }
    if let Some(token) = &sig.asyncness {
        return reject(token.span(), "a handler cannot be `async`");
    }
    if !sig.generics.params.is_empty() {
        return reject(sig.generics.span(), "a handler cannot be generic");
    }
    if sig.inputs.len() != 1 {
        return reject(sig.inputs.span(), "a handler takes one argument, the `Request`");
    }
    Ok(())
}
