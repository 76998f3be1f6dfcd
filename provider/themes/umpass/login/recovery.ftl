<#-- UMPASS: the way to the service's self-service recovery (/recover/), where a student who
     forgot the password or is locked out proves a verified contact. Keycloak's own reset is
     switched off in the realm (keycloak_config/realm.json). -->
<#macro link>
  <div id="umpass-recover" class="${properties.kcInputHelperTextItemClass!} umpass-recover">
    <span class="${properties.kcInputHelperTextItemTextClass!}">
      <a id="umpass-recover-link" href="${properties.umpassRecoveryUrl!'/recover/'}">${msg("umpassRecoverLink")}</a>
    </span>
  </div>
</#macro>
