// Progressive extras of the hosted pages: the copy button and passkeys (WebAuthn needs script).
// Every other page works without this file; passkey controls stay hidden where it cannot run.
"use strict";

const webauthnJson = () =>
  window.PublicKeyCredential &&
  typeof PublicKeyCredential.parseCreationOptionsFromJSON === "function" &&
  typeof PublicKeyCredential.parseRequestOptionsFromJSON === "function";

function showError(message) {
  let box = document.getElementById("error");
  if (!box) {
    box = document.createElement("p");
    box.id = "error";
    box.className = "error";
    box.setAttribute("role", "alert");
    document.querySelector("h1").after(box);
  }
  box.textContent = message;
}

async function postJson(url, body, headers) {
  const resp = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(data.message || resp.headers.get("x-error") || "the request failed");
  return data;
}

document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const field = document.getElementById(button.dataset.copy);
  field.select();
  try {
    await navigator.clipboard.writeText(field.value);
    button.textContent = "Copied";
  } catch {
    button.textContent = "Press Ctrl+C";
  }
});

// Account page: register a passkey through the JSON API (cookie session + its CSRF token).
const addPasskey = document.getElementById("add-passkey");
if (addPasskey && webauthnJson()) {
  addPasskey.hidden = false;
  addPasskey.addEventListener("submit", async (event) => {
    event.preventDefault();
    const base = addPasskey.dataset.base;
    const headers = { "x-csrf-token": addPasskey.elements.csrf.value };
    try {
      const challenge = await postJson(`${base}/v1/me/passkeys/challenge`, {}, headers);
      const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(challenge.options.publicKey);
      const credential = await navigator.credentials.create({ publicKey });
      await postJson(
        `${base}/v1/me/passkeys`,
        { registration_id: challenge.registration_id, name: addPasskey.elements.name.value, credential: credential.toJSON() },
        headers,
      );
      window.location.assign(`${base}/account?done=passkey_added`);
    } catch (e) {
      showError(e.name === "NotAllowedError" ? "The passkey was not created." : e.message);
    }
  });
}

// Login: ask the page for a challenge, let the authenticator answer, send the answer as the form.
const passkeyStep = document.getElementById("passkey-step");
if (passkeyStep && webauthnJson()) {
  passkeyStep.hidden = false;
  passkeyStep.addEventListener("submit", async (event) => {
    if (passkeyStep.elements.credential.value) return;
    event.preventDefault();
    const form = new URLSearchParams({ csrf: passkeyStep.elements.csrf.value, return_to: passkeyStep.elements.return_to.value });
    try {
      const resp = await fetch(passkeyStep.dataset.challenge, { method: "POST", credentials: "same-origin", body: form });
      const data = await resp.json().catch(() => ({}));
      if (!resp.ok) throw new Error(data.message || "the sign-in could not start");
      const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(data.options.publicKey);
      const credential = await navigator.credentials.get({ publicKey });
      passkeyStep.elements.credential.value = JSON.stringify(credential.toJSON());
      passkeyStep.submit();
    } catch (e) {
      showError(e.name === "NotAllowedError" ? "No passkey was used." : e.message);
    }
  });
}

// A session that only needs its access cookie renewed continues without a click.
const resume = document.querySelector("form[data-autosubmit]");
if (resume) resume.submit();
