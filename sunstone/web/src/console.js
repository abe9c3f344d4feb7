// The VM's screen: noVNC connected to sunstone's websocket for this VM, a relative URL
// resolved against the page's <base> (so it works behind a reverse proxy, over ws: or wss:
// as the page itself). window.oneConsole tells tests what happened.
import RFB from "./vendor/novnc/core/rfb.js";

const body = document.body;
const status = document.getElementById("status");
const cad = document.getElementById("ctrl-alt-del");
const url = new URL(body.dataset.ws, document.baseURI);
url.protocol = url.protocol === "https:" ? "wss:" : "ws:";

const state = { connected: false, disconnected: false, clean: null, desktop: "" };
window.oneConsole = state;

const rfb = new RFB(document.getElementById("screen"), url.href, { wsProtocols: ["binary"] });
rfb.scaleViewport = true;
rfb.resizeSession = false;

rfb.addEventListener("connect", () => {
  state.connected = true;
  status.textContent = "Connected";
  cad.disabled = false;
});
rfb.addEventListener("disconnect", (e) => {
  state.disconnected = true;
  state.clean = e.detail.clean;
  cad.disabled = true;
  status.textContent = e.detail.clean ? "Disconnected" : "The connection to the screen was lost or refused";
});
rfb.addEventListener("desktopname", (e) => { state.desktop = e.detail.name; });
rfb.addEventListener("securityfailure", (e) => {
  status.textContent = `Refused by the VNC server: ${e.detail.reason || e.detail.status}`;
});
rfb.addEventListener("credentialsrequired", () => {
  const password = window.prompt("The VM's VNC password");
  if (password !== null) rfb.sendCredentials({ password });
});
cad.addEventListener("click", () => rfb.sendCtrlAltDel());

// A framebuffer update drawn shows as painted pixels on noVNC's canvas (transparent until
// the first one): tests read state.drawn.
const painted = () => {
  const c = document.querySelector("#screen canvas");
  if (!c || !c.width || !c.height) return false;
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  for (let i = 3; i < d.length; i += 4 * 31) if (d[i] !== 0) return true;
  return false;
};
state.drawn = false;
const watcher = setInterval(() => {
  if (!state.drawn && state.connected) state.drawn = painted();
  if (state.drawn || state.disconnected) clearInterval(watcher);
}, 200);
