//! A small, realistic German/English demo data set for `kontor serve --demo`.

use anyhow::Result;
use kontor_core::{normalise_identity, Channel, IdentityKind, Role};
use kontor_store::{cases::CasePatch, ingest::NewInbound, Store};

struct DemoMessage {
    channel: Channel,
    kind: IdentityKind,
    from: &'static str,
    name: &'static str,
    subject: Option<&'static str>,
    text: &'static str,
}

const MESSAGES: &[DemoMessage] = &[
    DemoMessage { channel: Channel::Email, kind: IdentityKind::Email, from: "anna.schmidt@example.de", name: "Anna Schmidt",
        subject: Some("Umzug zum 1. Mai"), text: "Guten Tag, ich ziehe am 1. Mai in die Goethestraße 5, 10115 Berlin um. Bitte ändern Sie meine Anschrift für den Vertrag KV-448812." },
    DemoMessage { channel: Channel::Whatsapp, kind: IdentityKind::Phone, from: "+49 170 1234567", name: "Jonas Becker",
        subject: None, text: "Hallo, meine Rechnung für März ist doppelt abgebucht worden. Können Sie das prüfen? IBAN DE89 3704 0044 0532 0130 00" },
    DemoMessage { channel: Channel::Email, kind: IdentityKind::Email, from: "m.yilmaz@example.com", name: "Mehmet Yilmaz",
        subject: Some("Schadenmeldung Wasserschaden"), text: "Sehr geehrte Damen und Herren, in unserer Küche ist gestern ein Wasserrohr geplatzt. Schadennummer folgt. Bitte melden Sie sich." },
    DemoMessage { channel: Channel::Sms, kind: IdentityKind::Phone, from: "0151 23456789", name: "Laura Wagner",
        subject: None, text: "Zählerstand Strom 04.11.: 18432 kWh. Kundennummer 500123." },
    DemoMessage { channel: Channel::Email, kind: IdentityKind::Email, from: "olivia.brown@example.co.uk", name: "Olivia Brown",
        subject: Some("Cancel my contract"), text: "Hello, I would like to cancel my mobile contract 77-1200-3 at the end of the term. Please confirm in writing." },
    DemoMessage { channel: Channel::Webchat, kind: IdentityKind::ExternalId, from: "web-visitor-8812", name: "Peter Hoffmann",
        subject: None, text: "Wie lange dauert die Bearbeitung meines Kreditantrags? Ich warte seit zwei Wochen." },
    DemoMessage { channel: Channel::Email, kind: IdentityKind::Email, from: "anna.schmidt@example.de", name: "Anna Schmidt",
        subject: Some("Re: Umzug zum 1. Mai"), text: "Nachtrag: Meine neue Telefonnummer ist 0170 7654321." },
    DemoMessage { channel: Channel::Api, kind: IdentityKind::ExternalId, from: "crm-100245", name: "Sabine Keller",
        subject: Some("Beitragsanpassung"), text: "Warum ist mein Beitrag zum 1. Januar um 12 % gestiegen? Das ist nicht akzeptabel." },
];

/// Loads the demo set unless the store already has data.
pub async fn load(store: &Store) -> Result<()> {
    if !store.list_customers(None, 1).await?.items.is_empty() {
        tracing::info!("Store already has data; demo set not loaded.");
        return Ok(());
    }
    let privat = store.create_team("Privatkunden".into()).await?;
    let schaden = store.create_team("Schaden".into()).await?;
    let mut cases = Vec::new();
    for (i, m) in MESSAGES.iter().enumerate() {
        let address = normalise_identity(m.kind, m.from, "DE")?;
        let r = store
            .ingest(NewInbound {
                name: Some(m.name.into()),
                subject: m.subject.map(Into::into),
                provider_message_id: Some(format!("demo-{i}")),
                ..NewInbound::text(m.channel, m.kind, address, m.text)
            })
            .await?;
        cases.push(r.case_id);
    }
    store
        .patch_case(
            cases[2],
            CasePatch {
                team_id: Some(Some(schaden.id)),
                tags: Some(vec!["wasserschaden".into()]),
                priority: kontor_core::Priority::parse("high"),
                ..Default::default()
            },
        )
        .await?;
    store
        .patch_case(
            cases[1],
            CasePatch { team_id: Some(Some(privat.id)), tags: Some(vec!["rechnung".into()]), ..Default::default() },
        )
        .await?;
    store
        .patch_case(cases[3], CasePatch { status: kontor_core::CaseStatus::parse("resolved"), ..Default::default() })
        .await?;
    store
        .add_note(
            kontor_core::CaseId(cases[0]),
            "Adressänderung im Bestandssystem vorgemerkt, wartet auf Bestätigung.".into(),
            None,
        )
        .await?;
    if store.list_users().await?.is_empty() {
        store.create_user("demo@kontor.example".into(), "Demo Agent".into(), Role::Admin, "kontor-demo".into()).await?;
        tracing::info!("Demo user: demo@kontor.example / kontor-demo");
    }
    tracing::info!(messages = MESSAGES.len(), "Demo data loaded.");
    Ok(())
}
