//! The five event categories (AD-004) and the default routes they give an event: its topic and
//! its CloudEvents type.

/// The five event categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    /// A business fact within one bounded context: `domain.{service}.{aggregate}.{event}`.
    Domain,
    /// A message from one service to another: `integration.{source}.{target}.{event}`.
    Integration,
    /// A compliance or security record: `audit.{service}.{audit_category}`.
    Audit,
    /// An infrastructure or operational event: `system.{service}.{event}`.
    System,
    /// A user or operator notification: `notifications.{channel}.{kind}`.
    Notification,
}

impl Category {
    /// Every category, in declaration order.
    pub const ALL: [Category; 5] = [
        Category::Domain,
        Category::Integration,
        Category::Audit,
        Category::System,
        Category::Notification,
    ];

    /// The lower-case name carried in the `ce_category` header and written in schemas.
    pub const fn as_str(self) -> &'static str {
        match self {
            Category::Domain => "domain",
            Category::Integration => "integration",
            Category::Audit => "audit",
            Category::System => "system",
            Category::Notification => "notification",
        }
    }

    /// Parses [`Category::as_str`]'s output.
    pub fn parse(s: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The first segment of this category's default topic.
    pub const fn topic_prefix(self) -> &'static str {
        match self {
            Category::Notification => "notifications",
            other => other.as_str(),
        }
    }

    /// The derive that declares an event of this category (`DomainEvent`, ...), also the name of
    /// its trait.
    pub const fn derive_name(self) -> &'static str {
        match self {
            Category::Domain => "DomainEvent",
            Category::Integration => "IntegrationEvent",
            Category::Audit => "AuditEvent",
            Category::System => "SystemEvent",
            Category::Notification => "NotificationEvent",
        }
    }

    /// The name of its marker type in `eventbus::event::category` (`Domain`, ...).
    pub const fn marker(self) -> &'static str {
        match self {
            Category::Domain => "Domain",
            Category::Integration => "Integration",
            Category::Audit => "Audit",
            Category::System => "System",
            Category::Notification => "Notification",
        }
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What gives an event its default routes: its category, its wire name and the attributes of its
/// category (a missing one counts as empty; the rules report it).
#[derive(Debug, Clone, Copy)]
pub struct Route<'a> {
    /// The category.
    pub category: Category,
    /// The event's wire name (snake_case).
    pub name: &'a str,
    /// Domain: the aggregate.
    pub aggregate: Option<&'a str>,
    /// Integration: the target service.
    pub target: Option<&'a str>,
    /// Audit: the audit category.
    pub audit_category: Option<&'a str>,
    /// Notification: the channel.
    pub channel: Option<&'a str>,
    /// Notification: the kind.
    pub kind: Option<&'a str>,
}

/// A segment of a default topic or CloudEvents type: the service's name (known only where the
/// service's type is: at compile time of the user's crate, or at run time), or a fixed text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part<'a> {
    /// The publishing (for integration events, the source) service's name.
    Service,
    /// A fixed segment.
    Text(&'a str),
}

impl<'a> Route<'a> {
    /// The default topic's segments: `domain.{service}.{aggregate}.{event}`,
    /// `integration.{service}.{target}.{event}`, `audit.{service}.{audit_category}`,
    /// `system.{service}.{event}`, `notifications.{channel}.{kind}`.
    pub fn default_topic(&self) -> Vec<Part<'a>> {
        let prefix = Part::Text(self.category.topic_prefix());
        let text = |s: Option<&'a str>| Part::Text(s.unwrap_or_default());
        match self.category {
            Category::Domain => vec![
                prefix,
                Part::Service,
                text(self.aggregate),
                Part::Text(self.name),
            ],
            Category::Integration => {
                vec![
                    prefix,
                    Part::Service,
                    text(self.target),
                    Part::Text(self.name),
                ]
            }
            Category::Audit => vec![prefix, Part::Service, text(self.audit_category)],
            Category::System => vec![prefix, Part::Service, Part::Text(self.name)],
            Category::Notification => vec![prefix, text(self.channel), text(self.kind)],
        }
    }

    /// The CloudEvents type's segments: `{service}.{aggregate}.{event}` for domain events,
    /// `{service}.{event}` for the others.
    pub fn event_type(&self) -> Vec<Part<'a>> {
        let mut parts = vec![Part::Service];
        if let (Category::Domain, Some(aggregate)) = (self.category, self.aggregate) {
            parts.push(Part::Text(aggregate));
        }
        parts.push(Part::Text(self.name));
        parts
    }
}

/// `parts` joined with dots, the service's name in its place.
pub fn join(parts: &[Part<'_>], service: &str) -> String {
    parts
        .iter()
        .map(|p| match p {
            Part::Service => service,
            Part::Text(t) => t,
        })
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(category: Category) -> Route<'static> {
        Route {
            category,
            name: "order_placed",
            aggregate: Some("order"),
            target: Some("orders"),
            audit_category: Some("security"),
            channel: Some("email"),
            kind: Some("receipt"),
        }
    }

    #[test]
    fn the_default_routes_of_each_category() {
        let topics: Vec<String> = Category::ALL
            .iter()
            .map(|c| join(&route(*c).default_topic(), "shop"))
            .collect();
        assert_eq!(
            topics,
            [
                "domain.shop.order.order_placed",
                "integration.shop.orders.order_placed",
                "audit.shop.security",
                "system.shop.order_placed",
                "notifications.email.receipt",
            ]
        );
        assert_eq!(
            join(&route(Category::Domain).event_type(), "shop"),
            "shop.order.order_placed"
        );
        assert_eq!(
            join(&route(Category::Audit).event_type(), "shop"),
            "shop.order_placed"
        );
    }

    #[test]
    fn names_round_trip() {
        for c in Category::ALL {
            assert_eq!(Category::parse(c.as_str()), Some(c));
            assert_eq!(c.to_string(), c.as_str());
        }
        assert_eq!(Category::parse("gossip"), None);
    }
}
