<#macro content>
<#-- UMPASS: below every sign-in box, the way in for students who have not activated yet. -->
  <div id="umpass-activate" class="umpass-activate">
    <span>${msg("umpassActivatePrompt")}</span>
    <a id="umpass-activate-link" href="${properties.umpassActivationUrl!'/activate/'}">${msg("umpassActivateLink")}</a>
  </div>
</#macro>
