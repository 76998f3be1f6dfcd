<#macro content>
<#-- UMPASS: below every sign-in box, the way in for students who have not activated yet. -->
  <div id="umpass-activate" class="umpass-activate">
    <span>${msg("umpassActivatePrompt")}</span>
    <a id="umpass-activate-link" href="${properties.umpassActivationUrl!'/activate/'}">${msg("umpassActivateLink")}</a>
  </div>
<#-- Keycloak's language list is a select that moves on only by JavaScript; without it a phone
     gets the service's plain links instead (umpass.css shows one or the other). -->
  <#if realm.internationalizationEnabled && locale.supported?size gt 1>
  <nav id="umpass-languages" class="umpass-languages" aria-label="${msg("umpassLanguages")}">
    <#list locale.supported as l>
      <#if l.languageTag == locale.currentLanguageTag>
      <span class="umpass-language-current" aria-current="true" lang="${l.languageTag}">${l.label}</span>
      <#else>
      <a href="${l.url}" lang="${l.languageTag}">${l.label}</a>
      </#if>
    </#list>
  </nav>
  </#if>
</#macro>
