// The JSON API, with the login's basic credentials on every call (as
// RabbitMQ's management UI does). They are kept in sessionStorage: gone
// when the tab closes or on "Log out".
"use strict";

const Api = {
  KEY: "ringmq.auth",
  me: null,

  /** Base64 of "user:password" as UTF-8 (btoa alone takes only Latin-1). */
  encode(user, password) {
    const bytes = new TextEncoder().encode(user + ":" + password);
    let bin = "";
    for (const b of bytes) bin += String.fromCharCode(b);
    return btoa(bin);
  },

  saved() { return sessionStorage.getItem(this.KEY); },
  forget() { sessionStorage.removeItem(this.KEY); this.me = null; },

  /** Checks the credentials with /api/whoami; keeps them when they work. */
  async login(user, password) {
    const auth = this.encode(user, password);
    const me = await this.call("GET", "/api/whoami", undefined, auth);
    sessionStorage.setItem(this.KEY, auth);
    this.me = me;
    return me;
  },

  /** Resumes a saved login (a reload keeps the session). */
  async resume() {
    const auth = this.saved();
    if (!auth) return null;
    this.me = await this.call("GET", "/api/whoami", undefined, auth);
    return this.me;
  },

  isAdmin() { return !!this.me && (this.me.tags || []).includes("administrator"); },

  /** One call: the parsed JSON answer (null for none). Throws an Error with
   *  `status` and the API's reason when the answer is not 2xx. */
  async call(method, path, body, auth) {
    const headers = {
      "Authorization": "Basic " + (auth || this.saved() || ""),
      // Tells the API not to send a basic-auth challenge (no browser dialog).
      "X-Requested-With": "XMLHttpRequest",
    };
    const init = { method, headers, cache: "no-store", credentials: "omit" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = typeof body === "string" ? body : JSON.stringify(body);
    }
    const r = await fetch(path, init);
    const text = await r.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (_) { data = text; }
    }
    if (!r.ok) {
      const why = (data && data.reason) || (typeof data === "string" ? data : r.statusText);
      const e = new Error(r.status + ": " + why);
      e.status = r.status;
      throw e;
    }
    return data;
  },

  get(path) { return this.call("GET", path); },

  /** A path segment: vhost "/" is "%2F", any name is escaped. */
  seg(s) { return encodeURIComponent(s); },

  queuePath(vhost, name) { return "/api/queues/" + this.seg(vhost) + "/" + this.seg(name); },
};
