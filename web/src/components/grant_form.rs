//! Add a grant by hand (`POST /api/grants`).

use super::{GrantRequest, use_commands, use_strings};
use crate::i18n::{Strings, fill};
use popgate_core::net::Cidr;
use web_sys::HtmlInputElement;
use yew::prelude::*;

/// The form's fields as typed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GrantFields {
    pub address: String,
    pub ttl: String,
    pub messages: String,
    pub note: String,
}

/// Checks what can be checked here (the address, the message count) and builds the
/// request; the server checks the rest (the time to live) and its message is shown.
pub fn validate(s: &Strings, f: &GrantFields) -> Result<GrantRequest, String> {
    let address = f.address.trim();
    if address.parse::<Cidr>().is_err() {
        return Err(s.add_bad_address.to_owned());
    }
    let messages = match f.messages.trim() {
        "" => None,
        n => Some(
            n.parse::<u32>()
                .map_err(|_| s.add_bad_messages.to_owned())?,
        ),
    };
    let ttl = match f.ttl.trim() {
        "" => None,
        t if t.starts_with(|c: char| c.is_ascii_digit()) => Some(t.to_owned()),
        _ => return Err(s.add_bad_ttl.to_owned()),
    };
    let note = Some(f.note.trim())
        .filter(|n| !n.is_empty())
        .map(str::to_owned);
    Ok(GrantRequest {
        address: address.to_owned(),
        ttl,
        messages,
        note,
    })
}

#[function_component(GrantForm)]
pub fn grant_form() -> Html {
    let s = use_strings();
    let commands = use_commands();
    let fields = use_state(GrantFields::default);
    let error = use_state(|| None::<String>);
    let busy = use_state(|| false);

    let input = |set: fn(&mut GrantFields, String)| {
        let fields = fields.clone();
        Callback::from(move |e: InputEvent| {
            let mut next = (*fields).clone();
            set(
                &mut next,
                e.target_unchecked_into::<HtmlInputElement>().value(),
            );
            fields.set(next);
        })
    };
    let onsubmit = {
        let (fields, error, busy) = (fields.clone(), error.clone(), busy.clone());
        let add = commands.add_grant.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            match validate(s, &fields) {
                Err(message) => error.set(Some(message)),
                Ok(request) => {
                    error.set(None);
                    busy.set(true);
                    let (fields, error, busy) = (fields.clone(), error.clone(), busy.clone());
                    let done = Callback::from(move |result: Result<(), String>| {
                        busy.set(false);
                        match result {
                            Ok(()) => fields.set(GrantFields::default()),
                            Err(e) => error.set(Some(fill(s.request_failed, &[("error", &e)]))),
                        }
                    });
                    add.emit((request, done));
                }
            }
        })
    };
    html! {
        <form id="grant-add-form" class="add-grant" data-testid="grant-add-form" {onsubmit} novalidate=true>
            <h3>{ s.add_title }</h3>
            <div class="fields">
                <label>
                    <span>{ s.add_address }</span>
                    <input id="grant-add-address" data-testid="grant-add-address" type="text"
                        inputmode="decimal" autocomplete="off" spellcheck="false" required=true
                        placeholder="192.0.2.7" value={fields.address.clone()}
                        oninput={input(|f, v| f.address = v)} />
                </label>
                <label>
                    <span>{ s.add_ttl }</span>
                    <input id="grant-add-ttl" data-testid="grant-add-ttl" type="text" autocomplete="off"
                        placeholder="30m" value={fields.ttl.clone()} oninput={input(|f, v| f.ttl = v)} />
                </label>
                <label>
                    <span>{ s.add_messages }</span>
                    <input id="grant-add-messages" data-testid="grant-add-messages" type="text"
                        inputmode="numeric" autocomplete="off" placeholder="0"
                        value={fields.messages.clone()} oninput={input(|f, v| f.messages = v)} />
                </label>
                <label class="wide">
                    <span>{ s.add_note }</span>
                    <input id="grant-add-note" data-testid="grant-add-note" type="text" autocomplete="off"
                        value={fields.note.clone()} oninput={input(|f, v| f.note = v)} />
                </label>
                <button id="grant-add-submit" data-testid="grant-add-submit" type="submit"
                    disabled={*busy}>{ s.add_submit }</button>
            </div>
            if let Some(message) = (*error).clone() {
                <p class="error" role="alert" data-testid="grant-add-error">{ message }</p>
            }
        </form>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i18n::EN;

    fn fields(address: &str, ttl: &str, messages: &str, note: &str) -> GrantFields {
        GrantFields {
            address: address.into(),
            ttl: ttl.into(),
            messages: messages.into(),
            note: note.into(),
        }
    }

    #[test]
    fn builds_the_api_request() {
        let req = validate(&EN, &fields(" 192.0.2.0/24 ", "2h", "5", " laptop ")).expect("valid");
        assert_eq!(
            serde_json::to_string(&req).expect("json"),
            r#"{"address":"192.0.2.0/24","ttl":"2h","messages":5,"note":"laptop"}"#
        );
        // Empty optional fields are left out: the server's defaults apply.
        let req = validate(&EN, &fields("2001:db8::1", "", "", "")).expect("valid");
        assert_eq!(
            serde_json::to_string(&req).expect("json"),
            r#"{"address":"2001:db8::1"}"#
        );
    }

    #[test]
    fn refuses_what_it_can_check() {
        assert_eq!(
            validate(&EN, &fields("mail.example.test", "", "", "")),
            Err(EN.add_bad_address.to_owned())
        );
        assert_eq!(
            validate(&EN, &fields("192.0.2.1", "", "-1", "")),
            Err(EN.add_bad_messages.to_owned())
        );
        assert_eq!(
            validate(&EN, &fields("192.0.2.1", "soon", "", "")),
            Err(EN.add_bad_ttl.to_owned())
        );
    }
}
