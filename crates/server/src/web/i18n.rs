//! The interface's words in German and English.

use std::collections::BTreeMap;

/// An interface language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    De,
    En,
}

impl Lang {
    /// The language tag.
    pub fn code(self) -> &'static str {
        match self {
            Lang::De => "de",
            Lang::En => "en",
        }
    }

    /// Parses `de`/`en` (and regional forms such as `de-AT`).
    pub fn parse(s: &str) -> Option<Lang> {
        let primary = s.trim().split(['-', '_']).next().unwrap_or("").to_ascii_lowercase();
        match primary.as_str() {
            "de" => Some(Lang::De),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The best match for an `Accept-Language` header (by q-value), German if none matches.
    pub fn from_accept_language(header: Option<&str>) -> Lang {
        let mut best: Option<(f32, Lang)> = None;
        for part in header.unwrap_or("").split(',') {
            let mut it = part.split(';');
            let tag = it.next().unwrap_or("");
            let q = it.find_map(|p| p.trim().strip_prefix("q=")).and_then(|q| q.parse::<f32>().ok()).unwrap_or(1.0);
            if let Some(lang) = Lang::parse(tag) {
                if best.is_none_or(|(bq, _)| q > bq) {
                    best = Some((q, lang));
                }
            }
        }
        best.map(|(_, l)| l).unwrap_or(Lang::De)
    }
}

/// (key, German, English).
const WORDS: &[(&str, &str, &str)] = &[
    ("app_title", "Kontor", "Kontor"),
    ("sign_in", "Anmelden", "Sign in"),
    ("sign_out", "Abmelden", "Sign out"),
    ("email", "E-Mail-Adresse", "E-mail address"),
    ("password", "Passwort", "Password"),
    ("sign_in_failed", "E-Mail-Adresse oder Passwort ist falsch.", "Wrong e-mail address or password."),
    ("too_many_attempts", "Zu viele Versuche. Bitte warten Sie eine Minute.", "Too many attempts. Please wait a minute."),
    ("inbox", "Posteingang", "Inbox"),
    ("profile", "Profil", "Profile"),
    ("settings", "Einstellungen", "Settings"),
    ("search", "Suchen", "Search"),
    ("search_placeholder", "Suchen (/)", "Search (/)"),
    ("filter_all", "Alle", "All"),
    ("filter_mine", "Meine", "Mine"),
    ("filter_unassigned", "Nicht zugewiesen", "Unassigned"),
    ("status", "Status", "Status"),
    ("channel", "Kanal", "Channel"),
    ("team", "Team", "Team"),
    ("tag", "Schlagwort", "Tag"),
    ("tags", "Schlagwörter", "Tags"),
    ("priority", "Priorität", "Priority"),
    ("assignee", "Zuständig", "Assignee"),
    ("nobody", "niemand", "nobody"),
    ("customer", "Kunde", "Customer"),
    ("subject", "Betreff", "Subject"),
    ("age", "Alter", "Age"),
    ("no_subject", "(ohne Betreff)", "(no subject)"),
    ("empty_inbox", "Keine Vorgänge — alles erledigt. Neue Nachrichten erscheinen hier sofort.", "No cases — all done. New messages appear here right away."),
    ("older", "Ältere", "Older"),
    ("newest", "Neueste", "Newest"),
    ("status_open", "offen", "open"),
    ("status_pending", "wartend", "pending"),
    ("status_resolved", "erledigt", "resolved"),
    ("status_closed", "geschlossen", "closed"),
    ("priority_low", "niedrig", "low"),
    ("priority_normal", "normal", "normal"),
    ("priority_high", "hoch", "high"),
    ("priority_urgent", "dringend", "urgent"),
    ("delivery_queued", "wartet auf Versand", "queued"),
    ("delivery_sent", "gesendet", "sent"),
    ("delivery_delivered", "zugestellt", "delivered"),
    ("delivery_read", "gelesen", "read"),
    ("delivery_failed", "fehlgeschlagen", "failed"),
    ("internal_note", "Interne Notiz", "Internal note"),
    ("reply", "Antworten", "Reply"),
    ("note", "Notiz", "Note"),
    ("send", "Senden", "Send"),
    ("save_note", "Notiz speichern", "Save note"),
    ("reply_placeholder", "Antwort schreiben … (r)", "Write a reply … (r)"),
    ("note_placeholder", "Interne Notiz … (n)", "Internal note … (n)"),
    ("contact", "Kontakt erfassen", "Record contact"),
    ("contact_placeholder", "Worum ging es im Telefonat oder Brief? … (c)", "What was the call or letter about? … (c)"),
    ("save_contact", "Kontakt speichern", "Save contact"),
    ("contact_phone", "Telefonat", "Phone call"),
    ("contact_letter", "Brief", "Letter"),
    ("contact_in", "eingehend", "incoming"),
    ("contact_out", "ausgehend", "outgoing"),
    ("contact_minutes", "Dauer (Min.)", "Length (min)"),
    ("contact_kind", "Art", "Kind"),
    ("contact_direction", "Richtung", "Direction"),
    ("recorded_by", "erfasst von", "recorded by"),
    ("minutes_short", "Min.", "min"),
    ("record_call", "Anruf erfassen", "Record a call"),
    ("via", "über", "via"),
    ("identities", "Erreichbar über", "Reachable via"),
    ("other_cases", "Weitere Vorgänge", "Other cases"),
    ("none", "keine", "none"),
    ("save", "Speichern", "Save"),
    ("resolve", "Erledigt (e)", "Resolve (e)"),
    ("assign_me", "Mir zuweisen (a)", "Assign to me (a)"),
    ("stale_title", "Inzwischen hat sich der Vorgang geändert", "The case changed in the meantime"),
    ("stale_text", "Bitte prüfen Sie, bevor Sie senden:", "Please check before you send:"),
    ("send_anyway", "Trotzdem senden", "Send anyway"),
    ("discard", "Verwerfen", "Discard"),
    ("sent_ok", "Gesendet.", "Sent."),
    ("error", "Fehler", "Error"),
    ("live", "live", "live"),
    ("offline", "offline – verbinde neu …", "offline – reconnecting …"),
    ("new_since", "neu", "new"),
    ("language", "Sprache", "Language"),
    ("language_browser", "wie im Browser", "as in the browser"),
    ("new_password", "Neues Passwort", "New password"),
    ("saved", "Gespeichert.", "Saved."),
    ("shortcuts", "Tastenkürzel", "Keyboard shortcuts"),
    ("shortcut_help", "j/k: nächster/vorheriger · Enter: öffnen · r: antworten · n: Notiz · c: Kontakt erfassen · e: erledigt · a: mir zuweisen · f: Freigaben · /: suchen · ?: diese Hilfe", "j/k: next/previous · Enter: open · r: reply · n: note · c: record a contact · e: resolve · a: assign to me · f: approvals · /: search · ?: this help"),
    ("attachments", "Anhänge", "Attachments"),
    ("show_formatted", "Formatierte Ansicht", "Formatted view"),
    ("customer_wrote", "Kunde", "Customer"),
    ("agent", "Mitarbeiter", "Agent"),
    ("search_results", "Suchergebnisse", "Search results"),
    ("no_results", "Nichts gefunden.", "Nothing found."),
    ("messages", "Nachrichten", "Messages"),
    ("customers", "Kunden", "Customers"),
    ("back_to_inbox", "Zurück zum Posteingang", "Back to inbox"),
    ("not_found", "Nicht gefunden", "Not found"),
    ("forbidden", "Kein Zugriff auf diesen Vorgang.", "You have no access to this case."),
    ("merged_into", "Dieser Vorgang wurde zusammengeführt in", "This case was merged into"),
    ("related_title", "Vermutlich dasselbe Anliegen", "Probably the same request"),
    ("reason_similar_text", "ähnlicher Text", "similar text"),
    ("reason_other_channel", "anderer Kanal, gleicher Tag", "other channel, same day"),
    ("merge_here", "Hierher zusammenführen", "Merge into this case"),
    ("merge_confirm", "Alle Nachrichten dieses Vorgangs hierher verschieben?", "Move all messages of that case into this one?"),
    ("canned", "Textbausteine", "Canned responses"),
    ("canned_insert", "Textbaustein einfügen (::kürzel + Tab)", "Insert canned response (::shortcut + Tab)"),
    ("users", "Mitarbeiter", "Staff"),
    ("teams", "Teams", "Teams"),
    ("members", "Mitglieder", "Members"),
    ("add", "Hinzufügen", "Add"),
    ("remove", "Entfernen", "Remove"),
    ("delete", "Löschen", "Delete"),
    ("edit", "Bearbeiten", "Edit"),
    ("active", "aktiv", "active"),
    ("delete_team_confirm", "Team löschen? Seine Vorgänge sind danach für alle sichtbar.", "Delete the team? Its cases become visible to everyone."),
    ("create", "Anlegen", "Create"),
    ("name", "Name", "Name"),
    ("role", "Rolle", "Role"),
    ("title", "Titel", "Title"),
    ("shortcut", "Kürzel", "Shortcut"),
    ("text", "Text", "Text"),
    ("all_languages", "alle Sprachen", "all languages"),
    ("reply_only_assignee", "Nur die zuständige Person darf antworten", "Only the assignee may reply"),
    ("unread", "ungelesen", "unread"),
    ("merge_customer", "Mit anderem Kunden zusammenführen", "Merge with another customer"),
    ("merge_customer_hint", "Name, E-Mail oder Telefon", "Name, e-mail or phone"),
    ("merge_customer_confirm", "Diesen Kunden mit allen Vorgängen und Adressen hierher übernehmen?", "Move that customer with all cases and addresses into this one?"),
    ("history_merged_from", "Zusammengeführt aus Vorgang", "Merged from case"),
    ("awaiting_reply", "wartet auf Antwort", "awaiting a reply"),
    ("password_hint", "leer lassen, um es nicht zu ändern", "leave empty to keep it"),
    ("current_password", "Aktuelles Passwort", "Current password"),
    ("current_password_hint", "nur nötig, um das Passwort zu ändern", "needed only to change the password"),
    ("current_password_missing", "Bitte geben Sie Ihr aktuelles Passwort an, um es zu ändern.", "Please enter your current password to change it."),
    ("current_password_wrong", "Das aktuelle Passwort ist falsch. Das Passwort wurde nicht geändert.", "The current password is wrong. The password was not changed."),
    ("mail_from", "Von", "From"),
    ("mail_to", "An", "To"),
    ("mail_cc", "CC", "CC"),
    ("auto_reply", "Automatische Antwort", "Auto-reply"),
    ("auto_reply_hint", "Von einem Programm gesendet (Abwesenheitsnotiz, Verteiler, Massenmail) – wird nie automatisch beantwortet.", "Sent by a machine (out-of-office, mailing list, bulk mail) – never answered automatically."),
    ("raw_source", "Quelltext", "Source"),
    ("raw_source_hint", "Die E-Mail, wie sie ankam (.eml) herunterladen", "Download the mail as it arrived (.eml)"),
    ("channel_not_ready", "nicht eingerichtet", "not set up"),
    ("cc_placeholder", "weitere Empfänger, durch Komma getrennt", "more recipients, separated by commas"),
    ("cc_invalid", "„{address}“ ist keine gültige E-Mail-Adresse. Bitte korrigieren Sie das CC-Feld; die Antwort wurde nicht gesendet.", "“{address}” is not a valid e-mail address. Please correct the CC field; the reply was not sent."),
    ("cc_too_many", "Höchstens 20 CC-Adressen. Die Antwort wurde nicht gesendet.", "At most 20 CC addresses. The reply was not sent."),
    ("file_too_large", "„{name}“ ist zu groß (höchstens {max} MB je Datei). Die Antwort wurde nicht gesendet.", "“{name}” is too large (at most {max} MB a file). The reply was not sent."),
    ("file_unreadable", "„{name}“ konnte nicht gelesen werden. Die Antwort wurde nicht gesendet.", "“{name}” could not be read. The reply was not sent."),
    ("cc_refused", "Das CC-Feld enthält eine ungültige Angabe; die Antwort wurde nicht gesendet.", "The CC field holds something invalid; the reply was not sent."),
    ("subject_refused", "Der Betreff ist ungültig (höchstens 998 Zeichen, keine Zeilenumbrüche); die Antwort wurde nicht gesendet.", "The subject is invalid (at most 998 characters, no line breaks); the reply was not sent."),
    ("email_section", "E-Mail", "E-mail"),
    ("email_not_configured", "E-Mail ist nicht eingerichtet — siehe README, Abschnitt [email].", "E-mail is not set up — see the README, section [email]."),
    ("email_receiving", "Empfang", "Receiving"),
    ("email_sending", "Versand", "Sending"),
    ("smtp_listener", "SMTP-Empfang", "SMTP listener"),
    ("smtp_off", "aus (kein email.smtp_listen)", "off (no email.smtp_listen)"),
    ("listen_address", "Adresse", "Address"),
    ("domains", "Domains", "Domains"),
    ("imap_mailboxes", "IMAP-Postfächer", "IMAP mailboxes"),
    ("imap_none", "keine (kein [[email.imap]])", "none (no [[email.imap]])"),
    ("mailbox", "Postfach", "Mailbox"),
    ("state", "Zustand", "State"),
    ("last_activity", "Zuletzt aktiv", "Last activity"),
    ("last_error", "Letzter Fehler", "Last error"),
    ("restarts", "Neustarts", "Restarts"),
    ("relay", "Relay", "Relay"),
    ("sending_inactive", "nicht aktiv – siehe Protokoll des Servers", "not active – see the server's log"),
    ("sender", "Absender", "Sender"),
    ("relay_reachable", "erreichbar", "reachable"),
    ("relay_unreachable", "nicht erreichbar", "unreachable"),
    ("sending_off", "aus (kein email.outbound.relay) — Antworten per E-Mail werden abgelehnt", "off (no email.outbound.relay) — replies by e-mail are refused"),
    ("last_mail_received", "Letzte E-Mail empfangen", "Last mail received"),
    ("last_mail_sent", "Letzte E-Mail gesendet", "Last mail sent"),
    ("never", "noch nie", "never"),
    ("not_started", "nicht gestartet", "not started"),
    ("listener_starting", "startet", "starting"),
    ("listener_running", "läuft", "running"),
    ("listener_backoff", "gestört – neuer Versuch folgt", "failing – will retry"),
    ("listener_stopped", "angehalten", "stopped"),
    ("assist_strip", "Digitaler Assistent", "Digital assistant"),
    ("intent", "Anliegen", "Request"),
    ("intent_by_model", "vom Assistenten erkannt", "recognised by the assistant"),
    ("intent_by_agent", "vom Team gesetzt", "set by staff"),
    ("intent_confidence", "Sicherheit", "Confidence"),
    ("intent_alternatives", "Einschätzung des Assistenten", "The assistant's guesses"),
    ("sentiment", "Stimmung", "Sentiment"),
    ("extracted_data", "Erkannte Angaben", "Extracted data"),
    ("insert_into_reply", "In die Antwort einfügen", "Insert into the reply"),
    ("inserted", "eingefügt", "inserted"),
    ("style_check", "Stilprüfung", "Style check"),
    ("style_ok", "Keine Auffälligkeiten", "No style issues"),
    ("style_one", "1 Hinweis zum Stil", "1 style note"),
    ("style_many", "{n} Hinweise zum Stil", "{n} style notes"),
    ("style_select", "Im Text markieren", "Select in the text"),
    ("style_suggestion", "Vorschlag", "Suggestion"),
    ("style_unavailable", "Stilprüfung gerade nicht verfügbar", "Style check not available right now"),
    ("delivery_pending_approval", "wartet auf Freigabe", "awaiting approval"),
    ("delivery_rejected", "abgelehnt", "rejected"),
    ("automatic", "automatisch", "automatic"),
    ("automatic_hint", "Vom Assistenten automatisch gesendet", "Sent automatically by the assistant"),
    ("intent_set", "Anliegen korrigieren", "Correct the request"),
    ("intent_fix", "korrigieren", "correct"),
    ("intent_saved", "Anliegen gespeichert.", "Request saved."),
    ("alert", "Achtung", "Attention"),
    ("alert_badge", "Hinweis", "Alert"),
    ("approval_required", "Antworten brauchen Freigabe", "Replies need approval"),
    ("suggestion_title", "Vorschlag des Assistenten", "The assistant's suggestion"),
    ("suggestion_hint", "Bitte prüfen und anpassen, bevor Sie senden.", "Please check and adapt it before sending."),
    ("suggestion_clear", "Vorschlag verwerfen", "Discard the suggestion"),
    ("draft", "Entwurf", "Draft"),
    ("draft_hint", "Einen Antwortentwurf vom Sprachmodell holen", "Get a reply draft from the language model"),
    ("draft_loading", "Entwurf wird erstellt …", "Writing a draft …"),
    ("draft_done", "Entwurf eingefügt – bitte prüfen.", "Draft inserted – please check it."),
    ("draft_failed", "Kein Entwurf möglich", "No draft available"),
    ("draft_replace", "Den Text im Antwortfeld durch den Entwurf ersetzen?", "Replace the text in the reply box with the draft?"),
    ("approvals", "Freigaben", "Approvals"),
    ("approvals_intro", "Antworten, die vor dem Versand von einer zweiten Person freigegeben werden müssen (Vier-Augen-Prinzip).", "Replies a second person must approve before they are sent (four-eyes principle)."),
    ("approvals_empty", "Keine Antworten warten auf Freigabe. Hält eine Regel eine Antwort zurück, erscheint sie hier.", "No replies are waiting for approval. When a rule holds a reply back, it appears here."),
    ("approval_reason", "Grund", "Reason"),
    ("approval_author", "Verfasst von", "Written by"),
    ("approve", "Freigeben", "Approve"),
    ("reject", "Ablehnen", "Reject"),
    ("reject_comment", "Begründung (für Ablehnung nötig)", "Reason (required to reject)"),
    ("reject_needs_comment", "Bitte begründen Sie die Ablehnung.", "Please say why you reject it."),
    ("approval_own", "Ihre Antwort – eine Kollegin oder ein Kollege muss sie freigeben.", "Your reply – a colleague must approve it."),
    ("approved", "Freigegeben – die Antwort wird versandt.", "Approved – the reply is being sent."),
    ("rejected_done", "Abgelehnt – die Antwort wird nicht versandt.", "Rejected – the reply will not be sent."),
    ("assistant", "Assistent", "Assistant"),
    ("automation", "Automatisierung je Anliegen", "Automation per request"),
    ("automation_hint", "Aus: nichts. Vorschlag: die Textvorlage steht im Antwortfeld. Automatisch: die Textvorlage wird sofort gesendet (als automatische Antwort gekennzeichnet).", "Off: nothing. Suggest: the canned response is put into the reply box. Automatic: the canned response is sent right away (marked as automatic)."),
    ("level", "Stufe", "Level"),
    ("level_off", "aus", "off"),
    ("level_suggest", "Vorschlag", "suggest"),
    ("level_auto", "automatisch", "automatic"),
    ("business_hours", "Geschäftszeiten", "Business hours"),
    ("business_hours_hint", "Zeitspannen je Tag, z. B. 08:00-12:00, 13:00-17:00; leer: geschlossen.", "Spans per day, e.g. 08:00-12:00, 13:00-17:00; empty: closed."),
    ("business_hours_off", "Keine Geschäftszeiten festlegen", "No business hours"),
    ("timezone", "Zeitzone", "Time zone"),
    ("day_mon", "Montag", "Monday"),
    ("day_tue", "Dienstag", "Tuesday"),
    ("day_wed", "Mittwoch", "Wednesday"),
    ("day_thu", "Donnerstag", "Thursday"),
    ("day_fri", "Freitag", "Friday"),
    ("day_sat", "Samstag", "Saturday"),
    ("day_sun", "Sonntag", "Sunday"),
    ("rules", "Regeln", "Rules"),
    ("rules_hint", "Regeln greifen in dieser Reihenfolge bei jeder analysierten Kundennachricht, die alle Bedingungen erfüllt.", "Rules apply in this order to every analysed customer message that meets all their conditions."),
    ("rules_empty", "Noch keine Regeln.", "No rules yet."),
    ("rule_new", "Neue Regel", "New rule"),
    ("rule_edit", "Regel bearbeiten", "Edit rule"),
    ("rule_enabled", "aktiv", "enabled"),
    ("rule_conditions", "Bedingungen", "Conditions"),
    ("rule_actions", "Aktionen", "Actions"),
    ("rule_any", "beliebig", "any"),
    ("min_confidence", "Mindestsicherheit (%)", "Minimum confidence (%)"),
    ("keywords", "Stichwörter (durch Komma getrennt)", "Keywords (comma-separated)"),
    ("customer_languages", "Sprache des Kunden (z. B. de, en)", "Customer's language (e.g. de, en)"),
    ("hours_inside", "innerhalb der Geschäftszeiten", "inside business hours"),
    ("hours_outside", "außerhalb der Geschäftszeiten", "outside business hours"),
    ("action_set_team", "Team setzen", "Set team"),
    ("action_set_assignee", "Zuweisen an", "Assign to"),
    ("action_set_priority", "Priorität setzen", "Set priority"),
    ("action_add_tag", "Schlagwort hinzufügen", "Add tag"),
    ("action_auto_answer", "Automatisch antworten mit", "Answer automatically with"),
    ("action_require_approval", "Antworten brauchen Freigabe", "Replies need approval"),
    ("action_mark_spam", "Als Spam schließen", "Close as spam"),
    ("dry_run", "Probelauf", "Dry run"),
    ("dry_run_result", "{matched} von {examined} Nachrichten passen", "{matched} of {examined} messages match"),
    ("dry_run_unanalysed", "{n} noch nicht analysiert", "{n} not analysed yet"),
    ("move_up", "nach oben", "move up"),
    ("move_down", "nach unten", "move down"),
    ("delete_rule_confirm", "Diese Regel löschen?", "Delete this rule?"),
    ("cancel", "Abbrechen", "Cancel"),
    ("reply_held", "Gespeichert – die Antwort wartet auf Freigabe durch eine zweite Person.", "Saved – the reply waits for a second person's approval."),
];

/// All words of a language, for templates (`{{ t.sign_in }}`).
pub fn words(lang: Lang) -> BTreeMap<&'static str, &'static str> {
    WORDS.iter().map(|(k, de, en)| (*k, if lang == Lang::De { *de } else { *en })).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_best_supported_language() {
        let table: &[(Option<&str>, Lang)] = &[
            (None, Lang::De),
            (Some("de-DE,de;q=0.9"), Lang::De),
            (Some("en-US,en;q=0.9,de;q=0.8"), Lang::En),
            (Some("fr-FR,fr;q=0.9,en;q=0.5,de;q=0.7"), Lang::De),
            (Some("fr"), Lang::De),
            (Some("en-GB"), Lang::En),
        ];
        for (header, want) in table {
            assert_eq!(Lang::from_accept_language(*header), *want, "{header:?}");
        }
    }

    #[test]
    fn every_key_has_both_languages() {
        let mut seen = std::collections::HashSet::new();
        for (k, de, en) in WORDS {
            assert!(seen.insert(*k), "duplicate key {k}");
            assert!(!de.is_empty() && !en.is_empty(), "{k}");
        }
    }
}
