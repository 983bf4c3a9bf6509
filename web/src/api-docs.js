// The API browser (/api/docs): Swagger UI over TDS's own OpenAPI document. Requests made from
// here carry the session cookie for reads; "Authorize" takes an API token for everything else.
window.addEventListener("DOMContentLoaded", function () {
  window.ui = SwaggerUIBundle({
    url: "/api/v1/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    tryItOutEnabled: false,
    persistAuthorization: false,
  });
});
