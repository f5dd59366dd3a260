// The API docs: Swagger UI served from this process, reading /openapi.json.
"use strict";
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  validatorUrl: null, // the default validator is a remote service
  deepLinking: true,
});
