// hookd web UI: a receiver's sender verification (loaded after app.js, whose helpers it uses).
"use strict";

const SENDER_CHECKS = {
  "": "None: the trigger URL's token is enough",
  bearer: "Bearer secret (Authorization: Bearer …)",
  header: "A header holding a secret",
  github: "GitHub signature (X-Hub-Signature-256)",
  standardWebhooks: "Standard Webhooks signature (webhook-signature)",
};

// The API names these fields senderVerification.*; the form's inputs are named shorter.
const SENDER_FIELDS = { "senderVerification.type": "verifyType", "senderVerification.header": "verifyHeader", "senderVerification.secret": "verifySecret" };

function senderText(check) {
  if (!check) return null;
  return check.type === "header" ? `the header ${check.header}, holding the secret` : SENDER_CHECKS[check.type] || check.type;
}

// The fields, and `value()`: what the create or update body carries. A secret left empty on
// an edit keeps the stored one (the API never shows it).
function senderFields(source, editing) {
  const current = source?.senderVerification || null;
  const type = h("select", { id: "f-verifyType", name: "verifyType" },
    Object.entries(SENDER_CHECKS).map(([value, text]) => h("option", { value, text, selected: (current?.type || "") === value })));
  const header = h("input", { type: "text", id: "f-verifyHeader", name: "verifyHeader", value: current?.header || "", placeholder: "e.g. X-Harbor-Auth", autocomplete: "off" });
  const secret = h("input", { type: "password", id: "f-verifySecret", name: "verifySecret", autocomplete: "new-password", spellcheck: "false" });
  const fields = [
    field("verifyType", "Sender must prove", type, "A trigger without this proof gets 401 sender_unverified"),
    field("verifyHeader", "Header", header),
    field("verifySecret", "Secret", secret, "Give the sender the same secret"),
  ];
  const hint = fields[2].querySelector(".hint");
  const sync = () => {
    fields[1].hidden = type.value !== "header";
    fields[2].hidden = type.value === "";
    const keeps = editing && current && current.type === type.value;
    secret.placeholder = keeps ? "unchanged" : type.value === "standardWebhooks" ? "whsec_…" : "at least 16 characters";
    hint.textContent = keeps ? "Leave empty to keep the stored secret; hookd never shows it" : "Give the sender the same secret";
  };
  type.addEventListener("change", sync);
  sync();
  const value = () => {
    if (type.value === "") return editing && current ? null : undefined;
    return { type: type.value, header: type.value === "header" ? header.value.trim() : undefined, secret: secret.value || undefined };
  };
  return { fields, value };
}
