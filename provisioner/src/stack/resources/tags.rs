//! How the stack's resources are tagged and found again: every resource
//! carries `accunode:stack` and `accunode:component` (the only state the
//! provisioner keeps), and discovery keeps what carries this stack's tag.
//! EC2's filters and tag specifications, and the idempotency tokens of the
//! creates AWS can deduplicate, are here because several kinds use them.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};

use super::Ctx;
use crate::stack::spec::{COMPONENT_TAG, Resource, STACK_TAG};

/// A resource discovered with the stack's tag: its component and name from its tags.
pub fn tagged<'a>(
    stack: &str,
    tags: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Option<(String, Option<String>)> {
    let tags: BTreeMap<&str, &str> = tags.into_iter().collect();
    if tags.get(STACK_TAG) != Some(&stack) {
        return None;
    }
    let component = tags.get(COMPONENT_TAG)?;
    Some((
        (*component).to_owned(),
        tags.get("Name").map(|n| (*n).to_owned()),
    ))
}

/// The tags of an EC2 resource, made in the call that creates it.
pub fn tag_spec(ctx: &Ctx, resource_type: ResourceType, resource: &Resource) -> TagSpecification {
    let mut spec = TagSpecification::builder().resource_type(resource_type);
    for (key, value) in ctx.tags(&resource.component, &resource.name) {
        spec = spec.tags(Tag::builder().key(key).value(value).build());
    }
    spec.build()
}

pub fn stack_filter(ctx: &Ctx) -> Filter {
    Filter::builder()
        .name(format!("tag:{STACK_TAG}"))
        .values(&ctx.stack)
        .build()
}

/// Filters that find what the stack made for `component`: after a lost answer,
/// they tell whether the create happened.
pub fn component_filters(ctx: &Ctx, component: &str) -> [Filter; 2] {
    [
        stack_filter(ctx),
        Filter::builder()
            .name(format!("tag:{COMPONENT_TAG}"))
            .values(component)
            .build(),
    ]
}

/// An idempotency token for a request: the same for the same stack, component
/// and request, so a resend carries it. Creates whose resource AWS keeps listed
/// after it is deleted or failed (a NAT gateway, a route table) add `once()`:
/// with a token derived from the request alone, re-making one on the same
/// subnet and address would be answered with the old, dead one.
pub fn client_token(ctx: &Ctx, component: &str, request: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for part in [ctx.stack.as_str(), component].iter().chain(request) {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    // EC2 takes up to 64 ASCII characters.
    digest[..20].iter().map(|b| format!("{b:02x}")).collect()
}

/// A value of this create call alone, for [`client_token`]: resends of the
/// call share it; a re-run, which finds what an earlier run made by its tags,
/// does not.
pub fn once() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the system's random source");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The component and name of an EC2 resource when it is the stack's.
pub fn ec2_tagged(ctx: &Ctx, tags: &[Tag]) -> Option<(String, String)> {
    let (component, name) = tagged(
        &ctx.stack,
        tags.iter()
            .map(|t| (t.key().unwrap_or(""), t.value().unwrap_or(""))),
    )?;
    let name = name.unwrap_or_else(|| component.clone());
    Some((component, name))
}
