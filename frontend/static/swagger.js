// Starts Swagger UI on /schema/swagger. A file rather than an inline script, so the page works under
// the app's Content-Security-Policy (script-src 'self'); its settings come from this tag's data-*.
// Loaded with `defer` after the Swagger UI bundle: both have run, in order, once the page is parsed.
(() => {
  const settings = document.currentScript.dataset;
  const cookie = (name) =>
    document.cookie
      .split("; ")
      .find((row) => row.startsWith(`${name}=`))
      ?.slice(name.length + 1);
  window.SwaggerUIBundle({
    url: settings.specUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    // No badge fetched from validator.swagger.io: the page must not need the internet.
    validatorUrl: null,
    // "Try it out" from a signed-in browser: cookie-authenticated writes need the CSRF header.
    requestInterceptor: (request) => {
      const token = cookie(settings.csrfCookie);
      if (token !== undefined) request.headers[settings.csrfHeader] = token;
      return request;
    },
  });
})();
