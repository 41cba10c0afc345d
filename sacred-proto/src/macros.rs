//! Macros that declare each family of messages once: its kinds, their wire keys
//! and the (de)serialisation dispatch the envelopes in `message` use.

/// Declares a field-less kind enum whose variants name wire keys.
macro_rules! kind_enum {
    (
        $(#[$meta:meta])*
        pub enum $kind:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $wire:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $kind {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $kind {
            /// Every kind, in the order the specification lists them.
            pub const ALL: &'static [$kind] = &[$($kind::$variant),+];

            /// The key that names this kind on the wire.
            pub const fn name(self) -> &'static str {
                match self { $( $kind::$variant => $wire, )+ }
            }

            /// The kind a wire key names, if any.
            pub fn from_name(name: &str) -> Option<$kind> {
                match name { $( $wire => Some($kind::$variant), )+ _ => None }
            }
        }

        impl std::fmt::Display for $kind {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

/// Declares an enum with one newtype variant per kind, `From` for each body
/// type, and the helpers that write and read the body under its kind's key.
macro_rules! tagged_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident: $kind:ident {
            $( $(#[$vmeta:meta])* $variant:ident($ty:ty), )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq)]
        pub enum $name {
            $( $(#[$vmeta])* $variant($ty), )+
        }

        impl $name {
            /// The kind of this body, which names its key on the wire.
            pub fn kind(&self) -> $kind {
                match self { $( $name::$variant(_) => $kind::$variant, )+ }
            }

            /// Writes `"<kind>": body` into an envelope map.
            pub(crate) fn serialize_entry<M: serde::ser::SerializeMap>(
                &self,
                map: &mut M,
            ) -> Result<(), M::Error> {
                let key = self.kind().name();
                match self { $( $name::$variant(body) => map.serialize_entry(key, body), )+ }
            }

            /// Reads the body of an envelope entry whose key named `kind`.
            pub(crate) fn next_value<'de, A: serde::de::MapAccess<'de>>(
                kind: $kind,
                map: &mut A,
            ) -> Result<$name, A::Error> {
                Ok(match kind {
                    $( $kind::$variant => $name::$variant(map.next_value::<crate::message::Named<$ty>>()?.0), )+
                })
            }
        }

        $(
            impl From<$ty> for $name {
                fn from(body: $ty) -> $name {
                    $name::$variant(body)
                }
            }
        )+
    };
}
