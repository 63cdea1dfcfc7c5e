//! Types every shop service shares: the domain error, paging, line items,
//! the event topic.

use serde::{Deserialize, Serialize};

use bulwark_runtime::Topic;
use bulwark_storage::StoreError;
use unicode_normalization::{UnicodeNormalization, is_nfc};

/// Largest page a list request may ask for.
pub const PAGE_SIZE_MAX: u32 = 100;
/// Page size when the caller names none.
pub const PAGE_SIZE_DEFAULT: u32 = 20;
/// Longest accepted text field (names, usernames, emails), in bytes: ample
/// for real data, small enough that a row stays far below the store's
/// value limit.
pub const TEXT_LEN_MAX: usize = 256;

/// The error every shop service answers with. The edge maps each variant
/// to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ShopError {
    /// No such entity (404).
    #[error("{entity} {id} not found")]
    NotFound {
        /// `user`, `product`, `order`, `payment`.
        entity: String,
        /// The id asked for.
        id: u64,
    },
    /// The request conflicts with the current state: a duplicate unique
    /// field, an illegal state change (409).
    #[error("conflict: {reason}")]
    Conflict {
        /// What conflicts.
        reason: String,
    },
    /// A field failed validation (422).
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field, as the API names it.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A business rule refused the request: out of stock, payment declined
    /// (422 at the edge; a saga cancels the order with this reason).
    #[error("rejected: {reason}")]
    Rejected {
        /// Why.
        reason: String,
    },
    /// A temporary failure worth retrying (503).
    #[error("temporarily unavailable: {reason}")]
    Transient {
        /// Why.
        reason: String,
    },
    /// The store failed (500; the details are logged, not returned).
    #[error("storage failure: {message}")]
    Storage {
        /// The store's error text.
        message: String,
    },
}

impl ShopError {
    pub(crate) fn not_found(entity: &str, id: u64) -> Self {
        Self::NotFound {
            entity: entity.to_owned(),
            id,
        }
    }

    pub(crate) fn invalid(field: &str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn conflict(reason: impl Into<String>) -> Self {
        Self::Conflict {
            reason: reason.into(),
        }
    }

    pub(crate) fn rejected(reason: impl Into<String>) -> Self {
        Self::Rejected {
            reason: reason.into(),
        }
    }
}

impl From<StoreError> for ShopError {
    fn from(err: StoreError) -> Self {
        Self::Storage {
            message: err.to_string(),
        }
    }
}

/// A page request: 1-based page number and a size within
/// `1..=PAGE_SIZE_MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRequest {
    /// 1-based page number.
    pub page: u32,
    /// Items per page.
    pub page_size: u32,
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            page: 1,
            page_size: PAGE_SIZE_DEFAULT,
        }
    }
}

impl PageRequest {
    /// Checks the bounds.
    ///
    /// # Errors
    /// [`ShopError::Invalid`] naming `page` or `page_size`.
    pub fn validate(self) -> Result<Self, ShopError> {
        if self.page == 0 {
            return Err(ShopError::invalid("page", "must be at least 1"));
        }
        if self.page_size == 0 || self.page_size > PAGE_SIZE_MAX {
            return Err(ShopError::invalid(
                "page_size",
                format!("must be between 1 and {PAGE_SIZE_MAX}"),
            ));
        }
        Ok(self)
    }

    /// How many items to skip.
    #[must_use]
    pub fn offset(self) -> usize {
        (self.page as usize - 1) * self.page_size as usize
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Items in the whole list.
    pub total: u64,
    /// This page's number (1-based).
    pub page: u32,
    /// The page size asked for.
    pub page_size: u32,
}

impl<T> Page<T> {
    /// The requested page of `rows` (every row is read to count the total).
    ///
    /// # Errors
    /// [`ShopError::Invalid`] for a page request out of bounds; the first
    /// row that fails to read.
    pub(crate) fn collect<R, E>(
        rows: impl IntoIterator<Item = Result<R, E>>,
        page: PageRequest,
        mut item: impl FnMut(R) -> Result<T, ShopError>,
    ) -> Result<Self, ShopError>
    where
        ShopError: From<E>,
    {
        let page = page.validate()?;
        let mut total = 0_u64;
        let mut items = Vec::with_capacity(page.page_size as usize);
        for (i, row) in rows.into_iter().enumerate() {
            let row = row?;
            total += 1;
            if i >= page.offset() && items.len() < page.page_size as usize {
                items.push(item(row)?);
            }
        }
        Ok(Self {
            items,
            total,
            page: page.page,
            page_size: page.page_size,
        })
    }
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineItem {
    /// The product.
    pub product_id: u64,
    /// How many.
    pub quantity: u64,
    /// Unit price the client expects, in cents.
    pub price_cents: u64,
}

/// An event leaving a service through its outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShopEvent {
    /// Stable across redeliveries: `<service>:<outbox sequence>`. Consumers
    /// dedupe on it.
    pub id: String,
    /// What happened.
    pub kind: EventKind,
}

/// What an event says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum EventKind {
    /// A user was created.
    UserCreated {
        /// The user.
        user_id: u64,
        /// Their username.
        username: String,
    },
    /// A user was deleted.
    UserDeleted {
        /// The user.
        user_id: u64,
    },
    /// A product's stock fell to or below its low-water mark.
    StockLow {
        /// The product.
        product_id: u64,
        /// Stock left.
        quantity: u64,
    },
    /// An order's saga finished with everything done.
    OrderCompleted {
        /// The order.
        order_id: u64,
        /// Its user.
        user_id: u64,
        /// What was charged, in cents.
        total_cents: u64,
    },
    /// An order's saga finished cancelled, compensations done.
    OrderCancelled {
        /// The order.
        order_id: u64,
        /// Its user.
        user_id: u64,
        /// Why.
        reason: String,
    },
}

impl EventKind {
    /// The event's dotted name: `user.created`, `order.completed`, ...
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::UserCreated { .. } => "user.created",
            Self::UserDeleted { .. } => "user.deleted",
            Self::StockLow { .. } => "stock.low",
            Self::OrderCompleted { .. } => "order.completed",
            Self::OrderCancelled { .. } => "order.cancelled",
        }
    }
}

/// The topic shop events are published on, in batches: each message is
/// the events one outbox relay pass took from one service's outbox, in
/// outbox order. A subscriber applies a batch in one write, so an event
/// costs a fraction of a durable write instead of one each.
#[derive(Debug)]
pub struct ShopEvents;

impl Topic for ShopEvents {
    const NAME: &'static str = "shop.events";
    type Event = Vec<ShopEvent>;
}

/// Checks a required text field: trimmed, non-empty, without control
/// characters, at most [`TEXT_LEN_MAX`] bytes, and in Unicode NFC — the
/// same text typed as precomposed or combining characters (`é` as U+00E9
/// or `e` + U+0301) is stored as one value.
pub(crate) fn check_text(field: &str, value: &str) -> Result<String, ShopError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ShopError::invalid(field, "must not be empty"));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(ShopError::invalid(
            field,
            format!(
                "must not contain control characters (found U+{:04X})",
                u32::from(c)
            ),
        ));
    }
    let value: String = if is_nfc(value) {
        value.to_owned()
    } else {
        value.nfc().collect()
    };
    if value.len() > TEXT_LEN_MAX {
        return Err(ShopError::invalid(
            field,
            format!("must be at most {TEXT_LEN_MAX} bytes"),
        ));
    }
    Ok(value)
}

/// [`check_text`] for a value people must tell apart by sight (a username,
/// an email): also refuses the characters that render as nothing (zero-width
/// spaces and joiners, bidirectional controls, variation selectors, soft
/// hyphens, ...), so `zw\u{200B}sp` cannot pass for `zwsp`.
pub(crate) fn check_identifier(field: &str, value: &str) -> Result<String, ShopError> {
    let value = check_text(field, value)?;
    if let Some(c) = value.chars().find(|&c| is_invisible(c)) {
        return Err(ShopError::invalid(
            field,
            format!(
                "must not contain invisible characters (found U+{:04X})",
                u32::from(c)
            ),
        ));
    }
    Ok(value)
}

/// Unicode's default-ignorable code points (DerivedCoreProperties.txt,
/// Default_Ignorable_Code_Point): characters a renderer shows as nothing.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}'
        | '\u{17B4}' | '\u{17B5}' | '\u{180B}'..='\u{180F}'
        | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}'
        | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}'
        | '\u{FFF0}'..='\u{FFF8}' | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0000}'..='\u{E0FFF}')
}

/// An amount of cents as the API writes it: currency units with two
/// decimals (`1250` → `12.50`), for the texts clients read (reasons,
/// messages).
pub(crate) fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    bulwark_storage::unix_time_ms()
}
